//! From records to published model packages: reading tables, task specs, fitting, evaluation and
//! publishing to the registry. Polars lives here (and in batch scoring), never in inference.

pub mod cohort;
pub mod evaluate;
pub mod fit;
pub mod ingest;
pub mod pipeline;
pub mod synth;
pub mod task;

pub use pipeline::{Algorithm, TrainReport, train};
pub use task::TaskSpec;
