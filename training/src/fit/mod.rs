//! Fitting: the preprocessor's statistics and the estimators.

pub mod gbm;
pub mod logistic;
pub mod preprocess;
