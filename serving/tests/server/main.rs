//! The server's integration tests, one binary so that they build once and run side by side:
//! authentication, CDS Hooks, FHIR input, gRPC, monitoring, the Open Inference Protocol, population
//! reports, shadow versions, the serve policy and TLS.

mod auth;
mod cds_hooks;
mod fhir;
mod grpc;
mod monitoring;
mod open_inference;
mod population;
mod serve_policy;
mod shadow;
mod tls;
