//! memeval: an evaluation and benchmarking harness for conversational memory.
//!
//! The pipeline reads as the modules: [`scenario`] (scripted conversations)
//! → [`memory`] (the strategies) → [`runner`] (the replay) → [`metrics`] →
//! [`report`], with [`backend`] (the models), [`store`] (SQLite), [`index`]
//! (retrieval) and [`tokens`] (exact counting) beside them.

pub mod backend;
pub mod calibration;
pub mod cell;
pub mod chart;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod files;
pub mod gate;
pub mod import;
pub mod index;
pub mod memory;
pub mod metrics;
pub mod outdir;
pub mod par;
pub mod plugin;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod scores;
pub mod stats;
pub mod store;
pub mod term;
pub mod text;
pub mod tokens;
