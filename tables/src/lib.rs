//! Tables in and out: CSV and Parquet read with polars into typed feature columns (one reading
//! for training and scoring alike; in chunks for tables of any size), the guard that refuses
//! tables holding direct identifiers, batch scoring of a whole table into Parquet, and the
//! planner's population summaries and report. Polars stays here and in training: the server and
//! the inference core never link it.

pub mod batch;
pub mod chunks;
pub mod disclosure;
pub mod identifiers;
pub mod population;
pub mod report;
mod staged;
mod table;

pub use table::{
    FeatureColumn, TableError, feature_columns, read_table, refuse_identifiers, row_values, text_column, time_column,
};
