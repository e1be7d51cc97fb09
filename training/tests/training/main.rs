//! Training's integration tests on the shared data and synthetic events, one binary so that they
//! build once and run side by side.

mod deid_guard;
mod events_training;
mod gates;
mod import_package;
mod monitoring;
mod omop;
mod pbc2_events;
mod quality_bars;
mod reference_stats;
mod synth;
