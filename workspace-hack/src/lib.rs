//! No code: this crate exists for its dependencies' features (see its `Cargo.toml`), which keep
//! `cargo build` and `cargo test` compiling polars and burn the same way, so that the tests reuse
//! what the build compiled.
