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

/// The path of a shipped scenario, `scenarios/<name>.json`.
#[allow(dead_code)] // not every test crate uses it
pub fn shipped(name: &str) -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.json"))
        .display()
        .to_string()
}
