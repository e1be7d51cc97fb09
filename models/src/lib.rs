//! Carecast's lean inference core, linked by the server and by training alike: the model package
//! and registry, preprocessing, estimators, exact explanations and risk bands. No polars, no
//! tonic, no autodiff.

pub mod bands;
pub mod calibration;
pub mod clock;
pub mod competing;
pub mod deid;
pub mod drift;
pub mod estimator;
pub mod explain;
pub mod features;
pub mod gru;
pub mod integrated;
pub mod invalid;
pub mod linear;
pub mod mlp;
pub mod package;
pub mod preprocess;
pub mod registry;
pub mod schema;
pub mod scorer;
pub mod stack;
pub mod tree_import;
pub mod tree_predictor;
pub mod tree_shap;
pub mod trees;

pub use bands::{RiskBand, RiskBands};
pub use estimator::Estimator;
pub use invalid::InvalidModel;
pub use package::{ModelPackage, load_package};
pub use registry::Registry;
pub use schema::{FeatureKind, FeatureSpec, InputError, Monotone, Value};
pub use scorer::{Completeness, ModelDefinition, Score, Scorer, Workspace};
