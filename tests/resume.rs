//! Interruption and resume: a run killed with SIGKILL at any point, or
//! stopped with Ctrl-C, continues with `memeval run --resume DIR`, and its
//! outputs are those of an uninterrupted run, byte for byte.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{memeval, output_files, shipped};

const SCENARIOS: &[&str] = &[
    "generated-1000",
    "needle-cabin-wifi",
    "knowledge-updates",
    "travel-multihop",
];

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into()];
    a.extend(SCENARIOS.iter().map(|s| shipped(s)));
    a.extend(
        [
            "--out",
            &out.display().to_string(),
            "--no-timings",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Starts memeval with `args` in `cwd`, its output discarded, its errors
/// to `stderr`.
fn start(cwd: &Path, args: &[String], stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start memeval")
}

fn spawn(cwd: &Path, out: &Path, extra: &[&str]) -> Child {
    start(cwd, &args(out, extra), Stdio::piped())
}

fn staging(out: &Path) -> std::path::PathBuf {
    out.parent().unwrap().join(format!(
        ".{}.partial",
        out.file_name().unwrap().to_string_lossy()
    ))
}

/// The outputs of an uninterrupted run, and how long it took: interruptions
/// are timed as shares of that, so they land mid-run on a fast machine and
/// a slow one alike.
fn reference(
    cwd: &Path,
    extra: &[&str],
) -> (std::collections::BTreeMap<String, Vec<u8>>, Duration) {
    let out = cwd.join("reference");
    let a = args(&out, extra);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let start = std::time::Instant::now();
    let o = memeval(&a, cwd);
    let took = start.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (output_files(&out), took)
}

/// When runs are stopped until one is caught mid-run: shares of an
/// uninterrupted run's time, from half of it down (a run that finished
/// first is tried sooner next).
const STOP_SHARES: [f64; 8] = [0.5, 0.4, 0.3, 0.22, 0.16, 0.11, 0.07, 0.04];

/// Starts runs into `out` and stops each with `stop` after a share of
/// `took` ([`STOP_SHARES`]) until one is caught mid-run: its staging
/// folder there with its journal, nothing published. That run's output,
/// once it ended.
fn caught_mid_run(
    took: Duration,
    out: &Path,
    start: impl Fn() -> Child,
    stop: impl Fn(&Child),
) -> std::process::Output {
    for share in STOP_SHARES {
        let child = start();
        std::thread::sleep(took.mul_f64(share));
        stop(&child);
        let o = child.wait_with_output().unwrap();
        if staging(out).join("journal.sqlite").is_file() && !out.exists() {
            return o;
        }
        // Finished first (this machine is faster now), or stopped while
        // publishing: sooner next time.
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_dir_all(staging(out));
    }
    panic!("not caught mid-run");
}

fn resume(cwd: &Path, out: &Path) {
    let o = memeval(
        &["run", "--resume", &out.display().to_string(), "--quiet"],
        cwd,
    );
    assert!(
        o.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!staging(out).exists(), "the staging folder is left behind");
}

fn assert_same(a: &std::collections::BTreeMap<String, Vec<u8>>, out: &Path) {
    let b = output_files(out);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (k, v) in a {
        assert!(b[k] == *v, "{k} differs after the resume");
    }
}

/// Kills runs at several points (shares of an uninterrupted run's time),
/// resumes each, and compares with an uninterrupted run; at least two must
/// be caught mid-run. The first five points are always tried; more follow
/// while fewer than two were caught (the machine's load, which other tests
/// share, moves where a share lands).
fn kill_and_resume(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (want, took) = reference(dir.path(), extra);
    let mut interrupted = 0;
    let shares = [
        0.1, 0.25, 0.4, 0.6, 0.8, 0.5, 0.3, 0.7, 0.2, 0.45, 0.35, 0.15,
    ];
    for (i, share) in shares.into_iter().enumerate() {
        if i >= 5 && interrupted >= 2 {
            break;
        }
        let out = dir.path().join(format!("killed-{i}"));
        let mut child = spawn(dir.path(), &out, extra);
        std::thread::sleep(took.mul_f64(share));
        child.kill().unwrap(); // SIGKILL: no handler runs
        let status = child.wait().unwrap();
        if status.success() {
            // Finished before the kill: nothing to resume.
            assert_same(&want, &out);
            continue;
        }
        if out.exists() {
            // Killed after publishing, while it printed its table: what
            // it published is whole.
            assert!(!staging(&out).exists(), "published and staged at once");
            assert_same(&want, &out);
            continue;
        }
        if !staging(&out).exists() {
            // Killed before it started (still reading its input): nothing
            // to resume, nothing written.
            continue;
        }
        // Caught mid-run, its journal there; or caught while its finished
        // outputs were moved into place, its journal already gone.
        interrupted += 1;
        resume(dir.path(), &out);
        assert_same(&want, &out);
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} runs were caught mid-run"
    );
}

#[test]
fn a_run_killed_at_any_point_resumes_to_the_same_outputs() {
    kill_and_resume(&[]);
}

#[test]
fn interleaved_users_resume_too() {
    // Three live memories for four users: replays go through the registry.
    kill_and_resume(&["--set", "registry.max_active_users=3"]);
}

#[test]
fn a_run_killed_while_publishing_its_outputs_is_published_by_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (want, _) = reference(dir.path(), &[]);
    let baseline = dir.path().join("baseline.json");
    std::fs::copy(dir.path().join("reference/results.json"), &baseline).unwrap();
    // A finished run whose outputs were not moved into place yet: its
    // staging folder complete, its journal gone.
    let out = dir.path().join("killed");
    std::fs::rename(dir.path().join("reference"), staging(&out)).unwrap();
    // Killed after the journal's own file went, before its log did.
    for stray in ["journal.sqlite-wal", "journal.sqlite-shm"] {
        std::fs::write(staging(&out).join(stray), b"log").unwrap();
    }

    // A new run into the same folder would lose it.
    let mut a = args(&out, &[]);
    a.retain(|x| x != "--quiet");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = memeval(&a, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));

    // Resumed: published as it was, then reported and gated as a run is,
    // with the thresholds the run recorded.
    let o = memeval(
        &[
            "run",
            "--resume",
            &out.display().to_string(),
            "--baseline",
            &baseline.display().to_string(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!staging(&out).exists(), "the staging folder is left behind");
    // The same outputs, report.html apart: the gate put its section in it,
    // where the page keeps its place.
    let page = String::from_utf8(want["report.html"].clone()).unwrap();
    let got = std::fs::read_to_string(out.join("report.html")).unwrap();
    let (before, after) = page.split_once("<!--memeval:gate-->\n").unwrap();
    assert!(got.starts_with(before) && got.ends_with(after));
    assert!(got[before.len()..got.len() - after.len()].starts_with("<h2 id=\"gate\">Gate: passed"));
    std::fs::write(out.join("report.html"), &page).unwrap();
    assert_same(&want, &out);
    assert!(!out.join("journal.sqlite-wal").exists() && !out.join("journal.sqlite-shm").exists());
    assert!(stdout.contains("needle-cabin-wifi"), "{stdout}");
    assert!(
        stdout.contains(&format!("outputs: {}", out.display())),
        "{stdout}"
    );
    assert!(stdout.contains("PASS"), "{stdout}");
}

#[test]
fn a_resumed_run_in_the_default_folder_becomes_reports_latest() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let mut a: Vec<String> = vec!["run".into()];
    a.extend(SCENARIOS.iter().map(|s| shipped(s)));
    a.extend(["--no-timings".into(), "--quiet".into()]);
    let run = || start(dir.path(), &a, Stdio::null());
    let took = {
        let at = std::time::Instant::now();
        assert!(run().wait().unwrap().success());
        at.elapsed()
    };
    let latest = || std::fs::read_link(reports.join("latest")).unwrap();
    for share in STOP_SHARES {
        let mut child = run();
        std::thread::sleep(took.mul_f64(share));
        child.kill().unwrap();
        child.wait().unwrap();
        let staged = std::fs::read_dir(&reports).unwrap().find_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let name = name.strip_prefix('.')?.strip_suffix(".partial")?;
            Some(name.to_string())
        });
        let Some(name) = staged else {
            continue; // finished first: sooner next time
        };
        resume(dir.path(), &reports.join(&name));
        assert_eq!(latest(), Path::new(&name));
        return;
    }
    panic!("not caught mid-run");
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_partial_outputs_and_resume_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (want, took) = reference(dir.path(), &[]);
    let out = dir.path().join("stopped");
    let o = caught_mid_run(
        took,
        &out,
        || spawn(dir.path(), &out, &[]),
        |child| {
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
        },
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted:"), "{stderr}");
    assert!(
        stderr.contains(&format!("memeval run --resume {}", out.display())),
        "{stderr}"
    );
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(staging(&out).join("results.json")).expect("partial results"),
    )
    .unwrap();
    assert_eq!(results["meta"]["partial"], true);
    let html = std::fs::read_to_string(staging(&out).join("report.html")).unwrap();
    assert!(html.contains("<strong>Partial run:</strong>"));
    assert!(!out.exists());
    resume(dir.path(), &out);
    assert_same(&want, &out);
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert!(done["meta"].get("partial").is_none());
}

#[test]
fn an_interrupted_run_is_neither_overwritten_nor_resumed_with_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("needle.json");
    std::fs::copy(shipped("generated-1000"), &file).unwrap();
    let out = dir.path().join("out");
    let launch = |extra: &[&str]| {
        let mut a = vec![
            "run".to_string(),
            "needle.json".into(),
            "--out".into(),
            "out".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        start(dir.path(), &a, Stdio::null())
    };
    // Timed on a whole run first, so that the kill lands mid-run.
    let took = {
        let at = std::time::Instant::now();
        let o = memeval(&["run", "needle.json", "--out", "whole", "-q"], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        at.elapsed()
    };
    caught_mid_run(
        took,
        &out,
        || launch(&[]),
        |child| {
            // SAFETY: signalling our own child process (SIGKILL: no
            // handler runs).
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
        },
    );

    // A new run into the same folder would lose the interrupted one.
    let o = memeval(&["run", "needle.json", "--out", "out"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("holds an interrupted run") && e.contains("--resume"),
        "{e}"
    );

    // A scenario edited since cannot be resumed.
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "\"content\": \"",
        "\"content\": \"Edited. ",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let o = memeval(&["run", "--resume", "out"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("changed since the run started"), "{e}");

    // Settings from the environment do not stand in the way (the run's own
    // configuration applies).
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(["run", "--resume", "out"])
        .env("MEMEVAL_SEED", "7")
        .env("MEMEVAL_STRATEGIES", "window")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("changed since the run started"), "{e}");

    // Nothing to resume elsewhere; --force starts over.
    let o = memeval(&["run", "--resume", "elsewhere"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no interrupted run"));
    let o = memeval(
        &["run", "needle.json", "--out", "out", "--force", "-q"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("results.json").is_file() && !staging(&out).exists());
}

#[test]
fn a_run_with_a_plugin_killed_mid_run_resumes_to_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let plugin =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/tutorial.py");
    let cfg = dir.path().join("plugin.toml");
    std::fs::write(
        &cfg,
        format!(
            "strategies = [\"window\", \"plugin:tutorial\"]\n[plugins.tutorial]\ncommand = [\"python3\", {:?}]\nparams = {{ summary_trigger_tokens = 600, buffer_message_limit = 8 }}\n",
            plugin.display().to_string()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let extra = ["--config", cfg.as_str(), "--jobs", "1"];
    let (want, took) = reference(dir.path(), &extra);
    let out = dir.path().join("killed");
    caught_mid_run(
        took,
        &out,
        || spawn(dir.path(), &out, &extra),
        |child| {
            // SAFETY: signalling our own child process (SIGKILL: the
            // plugin's process is left to see its stdin close).
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
        },
    );
    // The plugin's replays the interrupted attempt finished (the rest are
    // redone by the resume).
    let finished: i64 = {
        let journal = rusqlite::Connection::open(staging(&out).join("journal.sqlite")).unwrap();
        journal
            .query_row(
                "SELECT count(*) FROM done WHERE strategy = 'plugin:tutorial'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    resume(dir.path(), &out);
    // The plugin's storage of the interrupted attempt is not the resumed
    // one's: the unfinished replays start over on empty storage, in a
    // folder of their own (none where the kill came after the plugin's
    // last replay).
    assert_eq!(
        out.join("plugins/tutorial/state.2").is_dir(),
        finished < SCENARIOS.len() as i64,
        "{finished} of the plugin's replays had finished"
    );
    let without_plugins = |files: std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .into_iter()
            .filter(|(k, _)| !k.starts_with("plugins"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let got = without_plugins(output_files(&out));
    let want = without_plugins(want);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs after the resume");
    }
}
