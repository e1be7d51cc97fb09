//! The model crate's integration tests: exact explanations, the one feature extractor, and models
//! imported from XGBoost and LightGBM.

mod explain_exact;
mod extract;
mod import_fixtures;
