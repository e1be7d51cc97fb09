//! The `carecast` command as users and clients run it, one binary so that the tests build once
//! and run side by side.

mod audit_crash;
mod common;
mod monitoring;
mod quickstart;
