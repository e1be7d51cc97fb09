//! Scores for clinicians and planners: the gRPC server over the model registry, the audit trail,
//! and batch scoring of whole populations.

pub mod audit;
pub mod audit_checkpoint;
mod audit_journal;
mod audit_postgres;
pub mod auth;
pub mod batch;
pub mod cds;
pub mod fhir;
pub mod fhir_server;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

pub use audit::AuditLog;
pub use service::{AppState, ephemeral_pseudonym_key};
pub use store::ModelStore;
