//! The server's integration tests, one binary so that they build once and run side by side: the
//! audit trail (embedded and PostgreSQL), authentication, batch scoring, CDS Hooks, gRPC and TLS.

mod audit;
mod audit_postgres;
mod auth;
mod batch;
mod cds_hooks;
mod fhir;
mod grpc;
mod tls;
