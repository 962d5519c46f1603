//! Helpers shared by the integration tests.

pub mod openai_server;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the real `memeval` binary in `cwd`.
#[allow(dead_code)] // not every test crate uses it
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

/// Every file under `dir` but the SQLite store (compared by its rows where
/// it matters), by path relative to `dir`.
#[allow(dead_code)] // not every test crate uses it
pub fn output_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains("memory.sqlite") {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A CSV file's records, by column name.
#[allow(dead_code)] // not every test crate uses it
pub fn rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(Result::unwrap)
        .collect()
}

/// The inspector's data, read from a report.html.
#[allow(dead_code)]
pub fn inspector_data(html: &str) -> serde_json::Value {
    let head = "<script type=\"application/json\" id=\"inspect-data\">";
    let at = html.find(head).expect("no inspector data") + head.len();
    let end = at + html[at..].find("</script>").unwrap();
    serde_json::from_str(&html[at..end]).unwrap()
}

/// How many probe asks the inspector's data holds.
#[allow(dead_code)]
pub fn asks_total(data: &serde_json::Value) -> usize {
    data["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["asks"].as_array().unwrap().len())
        .sum()
}
