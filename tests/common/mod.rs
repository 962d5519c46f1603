//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the real `memeval` binary in `cwd`.
pub fn memeval(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run memeval")
}
