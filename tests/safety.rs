//! Nothing a user has is lost, whatever is typed: output folders that may
//! not be replaced, files that are not regular files, unbounded inputs,
//! extreme settings, an emptied gate, escape sequences in input text and
//! formulas in CSV cells. Each case runs the real binary in a scratch tree
//! and checks the exit code, the message, and that every file that was
//! there before is there after, byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{memeval, rows, shipped};

/// Every file under `dir`, by path, with its bytes (links as their target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(p, target.to_string_lossy().as_bytes().to_vec());
            } else if meta.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A scratch tree: `root/work/` holds a scenario, a LoCoMo excerpt and a
/// folder of the user's notes; `root/` a file of its own.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join("keep/deep")).unwrap();
    std::fs::copy(shipped("travel-multihop"), work.join("s.json")).unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/locomo-excerpt.json"),
        work.join("locomo.json"),
    )
    .unwrap();
    std::fs::write(work.join("keep/notes.txt"), "my notes").unwrap();
    std::fs::write(work.join("keep/deep/more.txt"), "more").unwrap();
    std::fs::write(root.path().join("beside.txt"), "beside").unwrap();
    (root, work)
}

/// Asserts that `dir` holds exactly what `before` recorded.
fn unchanged(dir: &Path, before: &BTreeMap<PathBuf, Vec<u8>>, case: &str) {
    let after = snapshot(dir);
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| p.display().to_string())
        .collect();
    assert!(changed.is_empty(), "{case} changed {changed:?}");
}

/// A run of the scenario through `window` alone into `out`, which must
/// succeed.
fn quick_run(work: &Path, out: &str) {
    let o = memeval(
        &[
            "run",
            "s.json",
            "-q",
            "--out",
            out,
            "--strategies",
            "window",
        ],
        work,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit 2 with `want` in the message.
fn refused(o: &Output, want: &str, case: &str) {
    assert_eq!(o.status.code(), Some(2), "{case}: {}", stderr(o));
    assert!(stderr(o).contains(want), "{case}: {}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{case}: {}", stderr(o));
}

#[test]
fn force_never_empties_the_working_folder_its_parents_or_the_inputs() {
    let (root, work) = scratch();
    let before = snapshot(root.path());
    let commands: Vec<Vec<&str>> = vec![
        vec!["run", "s.json", "-q", "--force", "--out"],
        vec![
            "sweep",
            "s.json",
            "--strategy",
            "window",
            "--param",
            "window.max_tokens=100,200",
            "-q",
            "--force",
            "--out",
        ],
        vec!["import", "locomo", "locomo.json", "--force", "--out"],
        vec!["merge", "keep", "--force", "--out"],
        vec!["generate", "--users", "2", "--out"],
    ];
    let places = [
        (".", "working folder"),
        ("..", "working folder"),
        ("keep/..", "working folder"),
        ("./.", "working folder"),
        ("/", "root folder"),
    ];
    for cmd in &commands {
        for (place, why) in places {
            let mut args = cmd.clone();
            args.push(place);
            let o = memeval(&args, &work);
            refused(&o, why, &format!("{args:?}"));
            assert!(stderr(&o).contains("nothing was written"), "{args:?}");
            unchanged(root.path(), &before, &format!("{args:?} changed the tree"));
        }
    }
    // A folder that holds an input, from above it.
    let o = memeval(
        &["run", "work/s.json", "-q", "--force", "--out", "work"],
        root.path(),
    );
    refused(
        &o,
        "an input of this command",
        "run into its input's folder",
    );
    let o = memeval(
        &[
            "import",
            "locomo",
            "work/locomo.json",
            "--force",
            "--out",
            "work",
        ],
        root.path(),
    );
    refused(
        &o,
        "an input of this command",
        "import into its input's folder",
    );
    // Someone's folder: refused, with --force too.
    for force in [false, true] {
        let mut args = vec!["run", "s.json", "-q", "--out", "keep"];
        if force {
            args.push("--force");
        }
        let o = memeval(&args, &work);
        refused(&o, "memeval did not write it", "an unmarked folder");
    }
    unchanged(root.path(), &before, "");
    // memeval's own folder: replaced with --force, and nothing else moves.
    quick_run(&work, "mine");
    let o = memeval(
        &[
            "run",
            "s.json",
            "-q",
            "--out",
            "mine",
            "--strategies",
            "window",
        ],
        &work,
    );
    refused(&o, "--force", "memeval's folder without --force");
    let o = memeval(
        &[
            "run",
            "s.json",
            "-q",
            "--out",
            "mine",
            "--strategies",
            "buffer",
            "--force",
        ],
        &work,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let after = snapshot(root.path());
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left beside the outputs: {left:?}");
}

#[test]
fn single_files_are_regular_files_written_whole() {
    let (root, work) = scratch();
    quick_run(&work, "r");
    std::os::unix::fs::symlink(work.join("keep/notes.txt"), work.join("link.json")).unwrap();
    let before = snapshot(root.path());
    let cases: Vec<Vec<&str>> = vec![
        vec!["generate", "--messages", "40", "-o", "/dev/null"],
        vec!["generate", "--messages", "40", "-o", "/dev/stdout"],
        vec!["generate", "--messages", "40", "-o", "link.json"],
        vec!["generate", "--messages", "40", "-o", "keep"],
        vec!["baseline", "r", "-o", "/dev/null"],
        vec!["baseline", "r", "-o", "link.json"],
        vec![
            "run",
            "s.json",
            "-q",
            "--out",
            "r2",
            "--save-baseline",
            "/dev/null",
        ],
        vec![
            "gate",
            "--baseline",
            "r",
            "--current",
            "r",
            "--junit",
            "/dev/null",
        ],
    ];
    for args in &cases {
        let o = memeval(args, &work);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("memeval writes only regular files"),
            "{args:?}: {}",
            stderr(&o)
        );
        unchanged(root.path(), &before, &format!("{args:?} changed the tree"));
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // `-` is standard output where a command writes one file.
    let o = memeval(&["generate", "--messages", "40", "-o", "-"], &work);
    assert!(
        o.status.success() && o.stdout.starts_with(b"{"),
        "{}",
        stderr(&o)
    );
    let o = memeval(&["baseline", "r", "-o", "-"], &work);
    assert!(o.stdout.starts_with(b"{"), "{}", stderr(&o));
    // A file is replaced whole, and nothing is left beside it.
    let o = memeval(&["baseline", "r", "-o", "b.json"], &work);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = memeval(&["baseline", "r", "-o", "b.json"], &work);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::fs::read_dir(&work).unwrap().any(|e| {
        let n = e.unwrap().file_name();
        n.to_string_lossy().ends_with(".tmp")
    }));
}

#[test]
fn generated_names_follow_the_scenario_name_rule() {
    let (root, work) = scratch();
    let before = snapshot(root.path());
    for name in [
        "../../evil",
        "/tmp/ABS",
        "a/b",
        "",
        "x\u{1b}y",
        &"n".repeat(120),
    ] {
        let o = memeval(
            &[
                "generate",
                "--messages",
                "40",
                "--users",
                "2",
                "--name",
                name,
                "-o",
                "udir",
            ],
            &work,
        );
        refused(&o, "is not a valid name", name);
        unchanged(root.path(), &before, name);
    }
    let o = memeval(
        &[
            "generate",
            "--messages",
            "40",
            "--name",
            "../x",
            "-o",
            "g.json",
        ],
        &work,
    );
    refused(&o, "is not a valid name", "one file");
    // What generate writes, validate accepts.
    let o = memeval(
        &[
            "generate",
            "--messages",
            "40",
            "--users",
            "3",
            "--name",
            "ok.name-1",
            "-o",
            "udir",
        ],
        &work,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = memeval(&["validate", "udir"], &work);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_second_command_into_a_folder_in_use_is_told_who_holds_it() {
    let (_root, work) = scratch();
    std::fs::copy(shipped("generated-3000"), work.join("long.json")).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "run",
            "long.json",
            "s.json",
            "--out",
            "out",
            "-q",
            "--jobs",
            "1",
        ])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = work.join(".out.lock");
    let start = std::time::Instant::now();
    while !lock.exists() && start.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(lock.exists(), "the first run never locked its folder");
    for force in [false, true] {
        let mut args = vec!["run", "s.json", "--out", "out", "-q"];
        if force {
            args.push("--force");
        }
        let o = memeval(&args, &work);
        refused(&o, &format!("in use by pid {}", first.id()), "second run");
        let o = memeval(&["run", "--resume", "out"], &work);
        refused(
            &o,
            &format!("in use by pid {}", first.id()),
            "resume of a live run",
        );
    }
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run was disturbed");
    assert!(work.join("out/results.json").is_file() && !lock.exists());
}

#[test]
fn every_file_read_is_read_through_a_cap() {
    let (root, work) = scratch();
    quick_run(&work, "r");
    let before = snapshot(root.path());
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "s.json", "--config", "/dev/zero"],
        vec!["gate", "--baseline", "/dev/zero", "--current", "r"],
        vec!["gate", "--baseline", "r", "--current", "/dev/zero"],
        vec!["baseline", "/dev/zero"],
        vec!["import", "locomo", "/dev/zero", "--out", "imp"],
        vec!["validate", "/dev/zero"],
        vec![
            "run",
            "s.json",
            "--backend",
            "openai",
            "--set",
            "openai.summary_prompt_file=\"/dev/zero\"",
            "--set",
            "openai.require_key=false",
        ],
        vec![
            "run",
            "s.json",
            "--backend",
            "openai",
            "--set",
            "openai.api_key_file=\"/dev/zero\"",
            "--set",
            "openai.api_key_env=\"MEMEVAL_UNSET_VARIABLE\"",
        ],
    ];
    for args in &cases {
        let o = memeval(args, &work);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        // Results are parsed as they are read through the cap: a parser
        // refuses the device's first byte before the cap is reached
        // (files::tests checks the cap of a stream).
        let streamed = ["gate", "baseline"].contains(&args[0]) && e.contains("not memeval results");
        assert!(
            e.contains("/dev/zero") && (e.contains("limit") || e.contains("MiB") || streamed),
            "{args:?}: {e}"
        );
        unchanged(root.path(), &before, &format!("{args:?} changed the tree"));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args(["run", "s.json"])
        .env("MEMEVAL_CONFIG", "/dev/zero")
        .current_dir(&work)
        .output()
        .unwrap();
    refused(&o, "larger than the 1 MiB limit", "MEMEVAL_CONFIG");
    unchanged(root.path(), &before, "");
}

/// Every numeric key of the configuration, from its own defaults, and the
/// optional ones by name.
fn numeric_keys() -> Vec<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            serde_json::Value::Number(_) => out.push(at.to_string()),
            _ => {}
        }
    }
    let mut keys = Vec::new();
    let defaults = serde_json::to_value(memeval::config::Config::default()).unwrap();
    walk(&defaults, "", &mut keys);
    keys.extend(
        [
            "model.context_window",
            "vector.min_score",
            "openai.embedding_dimensions",
            "gate.min_recall.window",
            "prices.gpt-4o.input",
        ]
        .map(String::from),
    );
    keys
}

#[test]
fn no_value_of_any_setting_makes_memeval_panic() {
    let (_root, work) = scratch();
    let keys = numeric_keys();
    assert!(keys.len() >= 25, "{keys:?}");
    let values = [
        "-1",
        "0",
        "1",
        "0.5",
        "1e308",
        "-1e308",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "nan",
        "inf",
    ];
    let cases: Vec<(String, &str)> = keys
        .iter()
        .flat_map(|k| values.iter().map(move |v| (k.clone(), *v)))
        .collect();
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((key, value)) = cases.get(i) else {
                        break;
                    };
                    let out = format!("out-{i}");
                    let mut args = vec![
                        "run".to_string(),
                        "s.json".into(),
                        "-q".into(),
                        "--out".into(),
                        out.clone(),
                        "--set".into(),
                        format!("{key}={value}"),
                    ];
                    if key.starts_with("openai.") {
                        // Through the openai backend to a closed port: the
                        // client is built, every call fails at once.
                        for set in [
                            "backend=\"openai\"",
                            "openai.base_url=\"http://127.0.0.1:9/v1\"",
                            "openai.require_key=false",
                            "openai.max_retries=0",
                            "openai.retry_backoff_ms=0",
                            "strategies=[\"summary\"]",
                        ] {
                            if !set.starts_with(key.as_str()) {
                                args.extend(["--set".into(), set.into()]);
                            }
                        }
                        args.extend(["--set".into(), format!("{key}={value}")]);
                    }
                    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
                        .args(&args)
                        .current_dir(&work)
                        .output()
                        .unwrap();
                    let e = stderr(&o);
                    let code = o.status.code();
                    let ok = match code {
                        Some(0) | Some(4) => true,
                        // Refused: saying which setting, leaving nothing.
                        Some(2) => {
                            let leaf = key.rsplit('.').next().unwrap();
                            e.contains(leaf)
                                && !work.join(&out).exists()
                                && !work.join(format!(".{out}.partial")).exists()
                        }
                        _ => false,
                    };
                    if !ok || e.contains("panicked") {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{key}={value}: exit {code:?}: {e}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn flags_out_of_range_are_refused() {
    let (root, work) = scratch();
    let before = snapshot(root.path());
    for (args, want) in [
        (vec!["run", "s.json", "--jobs", "0"], "from 1 to 1024"),
        (
            vec![
                "sweep",
                "s.json",
                "--strategy",
                "window",
                "--param",
                "window.max_tokens=1,2",
                "--jobs",
                "0",
            ],
            "from 1 to 1024",
        ),
        (vec!["generate", "--messages", "4294967295"], "4294967295"),
        (vec!["generate", "--messages", "400000"], "400000"),
        (vec!["run", "s.json", "--repeat", "0"], "0"),
        (
            vec![
                "sweep",
                "s.json",
                "--strategy",
                "window",
                "--param",
                "window.max_tokens=1,2,3,4,5,6,7,8,9,10,11",
                "--param",
                "summary.trigger_tokens=1,2,3,4,5,6,7,8,9,10",
                "--param",
                "vector.top_k=1,2,3,4,5,6,7,8,9,10",
            ],
            "more than 1000 combinations",
        ),
    ] {
        let o = memeval(&args, &work);
        refused(&o, want, &format!("{args:?}"));
        unchanged(root.path(), &before, &format!("{args:?}"));
    }
}

#[test]
fn a_journal_holding_a_value_out_of_range_is_refused_on_resume() {
    let (_root, work) = scratch();
    let staging = work.join(".out.partial");
    std::fs::create_dir(&staging).unwrap();
    let spec = serde_json::json!({
        "cwd": work,
        "files": ["s.json"],
        "sha256": {},
        "config": {"backend": "openai", "openai": {"timeout_secs": 1e308, "require_key": false}},
        "shard": null,
        "repeat": 1,
        "timings": false,
    });
    memeval::store::Journal::open(&staging.join("journal.sqlite"))
        .unwrap()
        .set_spec(&spec.to_string())
        .unwrap();
    let o = memeval(&["run", "--resume", "out"], &work);
    refused(&o, "openai.timeout_secs is between", "resume");
}

#[test]
fn the_gate_refuses_what_would_check_nothing() {
    let (_root, work) = scratch();
    let o = memeval(
        &[
            "run",
            "s.json",
            "-q",
            "--out",
            "r",
            "--strategies",
            "window",
            "--no-timings",
        ],
        &work,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("r/results.json")).unwrap()).unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        std::fs::write(work.join(name), v.to_string()).unwrap();
        name.to_string()
    };
    let mut empty = results.clone();
    empty["results"] = serde_json::json!([]);
    empty["memeval_baseline"] = serde_json::json!(1);
    let mut partial = results.clone();
    partial["meta"]["partial"] = serde_json::json!(true);
    let mut future = results.clone();
    future["memeval_baseline"] = serde_json::json!(99);
    let mut other = results.clone();
    for a in other["results"].as_array_mut().unwrap() {
        a["scenario"] = serde_json::json!("something-else");
    }
    other["meta"]["scenarios"] = serde_json::json!([]);
    for (file, want) in [
        (write("empty.json", &empty), "holds no results"),
        (write("partial.json", &partial), "interrupted run"),
        (write("future.json", &future), "version 99"),
        (write("other.json", &other), "no scenario in common"),
    ] {
        for allow in [false, true] {
            let mut args = vec!["gate", "--baseline", file.as_str(), "--current", "r"];
            if allow {
                args.push("--allow-mismatch");
            }
            let o = memeval(&args, &work);
            refused(&o, want, &file);
        }
        if file != "other.json" {
            let o = memeval(&["gate", "--baseline", "r", "--current", &file], &work);
            refused(&o, want, &file);
            let o = memeval(&["baseline", &file, "-o", "b.json"], &work);
            refused(&o, want, &file);
            assert!(!work.join("b.json").exists());
        }
    }
}

/// A scenario whose ids and kinds hold escape sequences and formulas.
fn hostile(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.json");
    let text = serde_json::json!({
        "name": "hostile",
        "user": "=cmd|' /C calc'!A0",
        "facts": [{"id": "@fact", "statement": "The code is 42.", "expect": ["42"]}],
        "sessions": [{
            "id": "\u{1b}]0;pwned\u{7}s1",
            "turns": [
                {"role": "user", "content": "The code is 42.", "plants": ["@fact"]},
                {"role": "assistant", "content": "Noted."},
                {"id": "-2+3", "probe": "What is the code?", "expects": ["@fact"], "kind": "\u{1b}[2J=HYPERLINK(\"http://x\")"},
                {"id": "p2", "probe": "Which code?", "expects": ["@fact"], "kind": "=SUM(1)"}
            ]
        }]
    });
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

#[test]
fn input_text_reaches_no_terminal_as_control_codes_and_no_spreadsheet_as_formulas() {
    let (_root, work) = scratch();
    hostile(&work);
    let o = memeval(
        &["run", "hostile.json", "--out", "out", "--no-timings"],
        &work,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (what, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        assert!(!bytes.contains(&0x1b), "an escape reached {what}");
    }
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("\\u{1b}[2J"), "{printed}");
    // The cells that would run as formulas are written as text.
    let probes = rows(&work.join("out/probes.csv"));
    assert!(!probes.is_empty());
    for p in &probes {
        assert_eq!(p["user"], "'=cmd|' /C calc'!A0");
        assert_eq!(p["expected"], "'@fact");
        if p["probe_id"] == "p2" {
            assert_eq!(p["kind"], "'=SUM(1)");
        } else {
            assert_eq!(p["probe_id"], "'-2+3");
            assert!(p["kind"].starts_with('\u{1b}'), "{p:?}");
        }
    }
    let raw = std::fs::read_to_string(work.join("out/probes.csv")).unwrap();
    for line in raw.lines() {
        for cell in line.split(',') {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell} in {line}");
        }
    }
    // memeval's own readers take them back exactly: the report again, and
    // a merge, read the same rows.
    let o = memeval(&["merge", "out", "--out", "merged"], &work);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(work.join("out/probes.csv")).unwrap(),
        std::fs::read(work.join("merged/probes.csv")).unwrap()
    );
    let o = memeval(&["report", "out"], &work);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(work.join("out/report.html")).unwrap();
    assert!(html.contains("=SUM(1)"), "the report lost a probe kind");
    for guard in ["'=SUM", "&#39;=SUM", "&#x27;=SUM"] {
        assert!(!html.contains(guard), "the report shows the guard");
    }
}

#[test]
fn an_early_ctrl_c_leaves_nothing_half_made() {
    let (_root, work) = scratch();
    for delay_ms in [0u64, 5, 20, 60, 150] {
        let child = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args(["run", "s.json", "--out", "out", "-q", "--force"])
            .current_dir(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SAFETY: signalling a child this test started.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let o = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        match o.status.code() {
            Some(0) => {}
            Some(130) => assert!(!o.stderr.is_empty(), "exit 130 with no message"),
            None => assert_eq!(o.status.signal(), Some(libc::SIGINT)),
            other => panic!("exit {other:?}: {}", stderr(&o)),
        }
        assert!(
            !work.join(".out.partial.new").exists(),
            "after {delay_ms} ms"
        );
        assert!(!work.join(".out.lock").exists(), "after {delay_ms} ms");
    }
}
