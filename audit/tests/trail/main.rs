//! The audit trail's tests, one binary: the embedded journal and a real PostgreSQL server.

mod journal;
mod postgres;
