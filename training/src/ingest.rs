//! Reading records: flat tables (one row per patient or visit) and MEDS event datasets, into the
//! shapes fitting and feature extraction use. Nothing is dropped without being counted.

pub mod events;
pub mod flat;
pub mod meds;
pub mod omop;
pub mod privacy;
