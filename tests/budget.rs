//! `memeval budget` through the real binary: the breakdown of one call
//! agrees with the same call's row in a run's turns.csv.

mod common;
use common::{memeval, shipped as scenario};

/// The number printed in the `name` row of the breakdown.
fn tokens(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{out}"));
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

#[test]
fn the_breakdown_agrees_with_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario("needle-cabin-wifi");
    let o = memeval(
        &[
            "run",
            &file,
            "--strategies",
            "hybrid",
            "--out",
            "run",
            "-q",
            "--no-timings",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rd = csv::Reader::from_path(tmp.path().join("run/turns.csv")).unwrap();
    let header = rd.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rd
        .records()
        .map(|r| r.unwrap())
        .find(|r| &r[col("turn")] == "231")
        .unwrap();
    let o = memeval(
        &["budget", &file, "--strategy", "hybrid", "--turn", "231"],
        tmp.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.starts_with("needle-cabin-wifi / hybrid: message 231"),
        "{out}"
    );
    for (section, column) in [
        ("system", "tokens_system"),
        ("summary", "tokens_summary"),
        ("retrieved", "tokens_retrieved"),
        ("buffer", "tokens_buffer"),
        ("total", "context_tokens"),
    ] {
        let expected: u64 = row[col(column)].parse().unwrap();
        assert_eq!(tokens(&out, section), expected, "{section}\n{out}");
    }
    assert!(out.contains("share of max_context_tokens (8,000)"), "{out}");
    assert!(out.contains("headroom:"), "{out}");
    assert!(out.contains('█'), "bars: {out}");

    // The buffer strategy outgrows a small budget: flagged.
    let o = memeval(
        &[
            "budget",
            &file,
            "--strategy",
            "buffer",
            "--set",
            "memory.max_context_tokens=1000",
        ],
        tmp.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("OVER BUDGET by"), "{out}");
    assert!(out.contains("▶ over"), "{out}");

    // Bad input: exit 2 and a clear word.
    for (args, said) in [
        (vec!["--turn", "9999"], "has messages 1 to 248"),
        (vec!["--strategy", "hybird"], "did you mean \"hybrid\""),
    ] {
        let mut all = vec!["budget", file.as_str()];
        all.extend(args);
        let o = memeval(&all, tmp.path());
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains(said));
    }
}
