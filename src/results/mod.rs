//! A run's results, the layer every reader and writer of its files shares:
//! the rows of the tables ([`TurnRow`], [`ProbeRow`], ...), a replay's
//! [`JobResult`], the aggregates of results.json, the run's [`Metadata`],
//! writing the output files ([`write_outputs`]) and reading them back
//! ([`RunResults`], [`read::RunData`]). The engine produces these types;
//! the store, the report, the charts, the gate and merge consume them.

mod aggregate;
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
