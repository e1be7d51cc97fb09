//! Scores for clinicians in real time: the gRPC server (`carecast.v1`, and the Open Inference
//! Protocol for Triton and KServe clients) and CDS Hooks over the model registry,
//! every score committed to the audit trail (`carecast-audit`) before it is returned; and
//! planners' published population reports, read-only.

pub mod auth;
pub mod cds;
pub mod config;
pub mod drift;
pub mod fhir;
pub mod fhir_server;
pub mod metrics;
pub mod open_inference;
pub mod population;
pub mod server;
pub mod service;
pub mod setting;
pub mod store;
pub mod tls;

pub use service::{AppState, ephemeral_pseudonym_key};
pub use store::ModelStore;
