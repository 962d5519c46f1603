//! A run's results, the layer every reader and writer of its files shares:
//! the rows of the tables ([`TurnRow`], [`ProbeRow`], ...), a replay's
//! [`JobResult`], the aggregates of results.json, the run's [`Metadata`],
//! writing the output files ([`write_outputs`]) and reading them back
//! ([`RunResults`], [`read::RunData`]). The engine produces these types;
//! the store, the report, the charts, the gate and merge consume them.

mod aggregate;
pub mod compare;
mod file;
mod metadata;
mod pool;
pub mod read;
mod rows;
mod write;

pub use aggregate::*;
pub use file::*;
pub use metadata::*;
pub use pool::{Aggregator, Counts, Pool};
pub use rows::*;
pub use write::*;

/// Why a run's files could not be read or relied on; every message names
/// the file (and the line where there is one).
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file could not be read (missing, over its size cap, I/O).
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The file is not what memeval writes.
    #[error("{0}")]
    Invalid(String),
    /// The results may not be relied on: an interrupted run's, an empty
    /// one, or a baseline of an unknown version.
    #[error("{0}")]
    Unusable(String),
}
