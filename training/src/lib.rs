//! From records to published model packages: reading tables, task specs, fitting, evaluation and
//! publishing to the registry. Tables are read through `carecast-tables`; nothing here is linked
//! by the server.

pub mod card;
pub mod cohort;
pub mod dataset;
pub mod evaluate;
pub mod fit;
pub mod gates;
pub mod import;
pub mod ingest;
pub mod monitor;
pub mod pipeline;
pub mod rng;
pub mod subgroups;
pub mod synth;
pub mod task;

pub use pipeline::{Algorithm, TrainOptions, TrainReport, train};
pub use task::TaskSpec;
