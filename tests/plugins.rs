//! Plugins through the real protocol: Python processes over stdio (and one
//! over http), measured beside the built-in strategies.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::openai_server::{Options, Server};
use common::{memeval, output_files, rows, shipped};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("MEMEVAL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A configuration with `strategies` and plugin sections (TOML) in `dir`.
fn config(dir: &Path, strategies: &[&str], rest: &str) -> PathBuf {
    let path = dir.join("memeval.toml");
    let list: Vec<String> = strategies.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(&path, format!("strategies = [{}]\n{rest}", list.join(", "))).unwrap();
    path
}

/// A `[plugins.NAME]` section running a Python file of the repository.
fn plugin(name: &str, file: &str, extra: &str) -> String {
    format!(
        "[plugins.{name}]\ncommand = [{:?}, {:?}]\n{extra}\n",
        python(),
        root().join(file).display().to_string()
    )
}

fn run(dir: &Path, cfg: &Path, out: &str, scenarios: &[&str], more: &[&str]) -> Output {
    let files: Vec<String> = scenarios.iter().map(|s| shipped(s)).collect();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(files.iter().map(String::as_str));
    let cfg = cfg.display().to_string();
    args.extend(["--config", &cfg, "--out", out, "--no-timings", "--quiet"]);
    args.extend(more);
    memeval(&args, dir)
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "memeval failed ({:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn every_scenario() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The rows of `file` for `strategy`, without the strategy column.
fn rows_of(
    dir: &Path,
    file: &str,
    strategy: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    rows(&dir.join(file))
        .into_iter()
        .filter(|r| r["strategy"] == strategy)
        .map(|mut r| {
            r.remove("strategy");
            r
        })
        .collect()
}

/// results.json's aggregates of `strategy`, without its name.
fn results_of(dir: &Path, strategy: &str) -> Vec<Value> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for key in ["results", "totals"] {
        for r in v[key].as_array().unwrap() {
            if r["strategy"] == strategy {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("strategy");
                out.push(r);
            }
        }
    }
    out
}

/// Every output of `strategy` equals the built-in window's.
fn same_as_window(out: &Path, strategy: &str) {
    for file in ["turns.csv", "probes.csv", "summaries.csv"] {
        let (a, b) = (rows_of(out, file, "window"), rows_of(out, file, strategy));
        assert!(!a.is_empty() || file == "summaries.csv", "{file}: no rows");
        assert_eq!(a.len(), b.len(), "{file}: row counts");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{file}: window and {strategy} differ");
        }
    }
    let (a, b) = (results_of(out, "window"), results_of(out, strategy));
    assert!(!a.is_empty());
    assert_eq!(a, b, "results.json: window and {strategy} differ");
}

fn log(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join("plugins").join(format!("{name}.log"))).unwrap()
}

#[test]
fn the_python_window_equals_the_builtin_window_on_every_shipped_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["window", "plugin:pywindow"],
        &plugin(
            "pywindow",
            "examples/plugins/window.py",
            "params = { max_tokens = 4000 }\nprocesses = 2",
        ),
    );
    let names = every_scenario();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let o = run(dir.path(), &cfg, "out", &refs, &[]);
    ok(&o);
    let out = dir.path().join("out");
    same_as_window(&out, "plugin:pywindow");
    let probes = rows_of(&out, "probes.csv", "plugin:pywindow");
    assert!(
        probes.len() > 300,
        "every scenario's probes: {}",
        probes.len()
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["plugins"]["pywindow"]["name"], "Window");
    assert_eq!(meta["plugins"]["pywindow"]["transport"], "stdio");
    // The SDK answers in order, so it lets memeval send requests together.
    assert_eq!(
        meta["plugins"]["pywindow"]["capabilities"]["pipeline"],
        true
    );
    // Two processes served the ten replays.
    let started = log(&out, "pywindow").matches("started:").count();
    assert!((1..=2).contains(&started), "{started} processes");
}

#[test]
fn a_plugin_restarted_between_sessions_restores_each_user_from_its_own_storage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["window", "plugin:restarted"],
        &plugin(
            "restarted",
            "tests/plugins/faulty.py",
            "params = { max_tokens = 300, log_ops = true }\nrestart_between_sessions = true",
        ),
    )
    .display()
    .to_string();
    // The window is small, so that what is restored matters.
    let o = run(
        dir.path(),
        Path::new(&cfg),
        "out",
        &["dbt-fanout-support", "returning-renovation"],
        &["--set", "window.max_tokens=300"],
    );
    ok(&o);
    let out = dir.path().join("out");
    same_as_window(&out, "plugin:restarted");
    let log = log(&out, "restarted");
    let started = log.matches("started:").count();
    let flushes = log.matches("op flush").count();
    assert!(started >= 4, "a process per session: {started}\n{log}");
    // Each restart follows a flush, and each new process opens the user again.
    assert!(flushes >= started, "{flushes} flushes, {started} starts");
    assert!(log.matches("op open user ana.torres").count() >= 2, "{log}");
}

#[test]
fn the_registry_evicts_users_through_close_and_reopens_them_through_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["window", "plugin:lru"],
        &plugin(
            "lru",
            "tests/plugins/faulty.py",
            "params = { max_tokens = 4000, log_ops = true }",
        ),
    );
    let names = every_scenario();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let o = run(
        dir.path(),
        &cfg,
        "out",
        &refs,
        &["--set", "registry.max_active_users=3"],
    );
    ok(&o);
    let out = dir.path().join("out");
    same_as_window(&out, "plugin:lru");
    let log = log(&out, "lru");
    let (opens, closes) = (
        log.matches("op open").count(),
        log.matches("op close").count(),
    );
    let registry: Value =
        serde_json::from_slice(&std::fs::read(out.join("registry.json")).unwrap()).unwrap();
    let evictions = registry["evictions"].as_u64().unwrap() as usize;
    assert!(evictions > 0);
    // One lane per strategy: the plugin's lane evicted as often as the
    // built-in's, each eviction a close, each return an open.
    assert!(closes > names.len(), "{closes} closes");
    assert_eq!(opens, closes, "every user opened is closed by the end");
    assert_eq!(
        log.matches("started:").count(),
        1,
        "one process for the lane"
    );
}

/// A run of the window and a misbehaving plugin over two scenarios; the
/// plugin misbehaves for `user` at message 3.
fn faulty_run(fault: &str, user: &str) -> (tempfile::TempDir, Output) {
    faulty_run_with(fault, user, false)
}

/// As `faulty_run`, the plugin declaring `pipeline` or not.
fn faulty_run_with(fault: &str, user: &str, pipeline: bool) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["window", "plugin:bad"],
        &plugin(
            "bad",
            "tests/plugins/faulty.py",
            &format!(
                "params = {{ fault = {fault:?}, user = {user:?}, at = 3, pipeline = {pipeline} }}\ntimeout_ms = 1500"
            ),
        ),
    );
    let o = run(
        dir.path(),
        &cfg,
        "out",
        &["travel-multihop", "cold-start-billing"],
        &[],
    );
    (dir, o)
}

#[test]
fn every_fault_fails_its_replay_with_a_named_error_and_the_others_finish() {
    // Each fault with requests one at a time, and sent together to a
    // process that pipelines.
    for (fault, says, pipeline) in [
        ("garbage", "not JSON", false),
        ("wrong_id", "a reply with id", false),
        ("hang", "no reply within timeout_ms = 1500", false),
        ("exit", "exited", false),
        ("error", "the memory store is full", false),
        ("bad_kind", "unknown section kind \"graph\"", false),
        ("bad_source", "is not a message number", false),
        ("garbage", "not JSON", true),
        ("wrong_id", "a reply with id", true),
        ("exit", "exited", true),
        ("error", "the memory store is full", true),
        ("bad_source", "is not a message number", true),
    ] {
        let (dir, o) = faulty_run_with(fault, "ines.travel", pipeline);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(4), "{fault}: {err}");
        assert!(err.contains("plugin \"bad\""), "{fault}: {err}");
        assert!(err.contains("user \"ines.travel\""), "{fault}: {err}");
        assert!(err.contains("message 3"), "{fault}: {err}");
        assert!(err.contains(says), "{fault}: {err}");
        if !matches!(fault, "error" | "bad_kind" | "bad_source") {
            // The protocol broke: the log's last lines say what the plugin did.
            assert!(err.contains("misbehaving now"), "{fault}: {err}");
        }
        let out = dir.path().join("out");
        let meta: Value =
            serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
        let failed = meta["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{fault}: {failed:?}");
        assert_eq!(failed[0]["scenario"], "travel-multihop");
        assert_eq!(failed[0]["strategy"], "plugin:bad");
        // The failed replay's rows are nowhere; every other replay's are.
        let turns = rows(&out.join("turns.csv"));
        let has = |s: &str, k: &str| {
            turns
                .iter()
                .any(|r| r["scenario"] == s && r["strategy"] == k)
        };
        assert!(!has("travel-multihop", "plugin:bad"), "{fault}");
        assert!(has("cold-start-billing", "plugin:bad"), "{fault}");
        assert!(has("travel-multihop", "window") && has("cold-start-billing", "window"));
        let report = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(report.contains("Failed replays"), "{fault}");
        // A gate over results that leave replays out checks nothing true.
        let o = memeval(
            &["gate", "--baseline", "out", "--current", "out"],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{fault}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("failed"),
            "{fault}"
        );
    }
}

#[test]
fn leaks_are_counted_not_hidden() {
    let (dir, o) = faulty_run("leak", "ines.travel");
    ok(&o);
    let probes = rows(&dir.path().join("out/probes.csv"));
    let leaked = |s: &str, k: &str| -> u32 {
        probes
            .iter()
            .filter(|r| r["scenario"] == s && r["strategy"] == k)
            .map(|r| r["leaked"].parse::<u32>().unwrap())
            .sum()
    };
    let asked = probes
        .iter()
        .filter(|r| r["scenario"] == "travel-multihop" && r["strategy"] == "plugin:bad")
        .count() as u32;
    assert!(asked > 0);
    // Two foreign items at each of the victim's probes.
    assert_eq!(leaked("travel-multihop", "plugin:bad"), 2 * asked);
    assert_eq!(leaked("cold-start-billing", "plugin:bad"), 0);
    assert_eq!(leaked("travel-multihop", "window"), 0);
}

#[test]
fn a_plugin_over_http_equals_the_builtin_window() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut server = std::process::Command::new(python())
        .arg(root().join("tests/plugins/faulty.py"))
        .arg("--http")
        .arg(&port_file)
        .spawn()
        .expect("start the http plugin");
    let mut port = String::new();
    for _ in 0..500 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            port = p;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!port.is_empty(), "the http plugin did not start");
    let cfg = config(
        dir.path(),
        &["window", "plugin:web"],
        &format!(
            "[plugins.web]\nurl = \"http://127.0.0.1:{port}/\"\nparams = {{ max_tokens = 4000 }}\nrestart_between_sessions = true\n"
        ),
    );
    let o = run(
        dir.path(),
        &cfg,
        "out",
        &["travel-multihop", "dbt-fanout-support"],
        &[],
    );
    let _ = server.kill();
    let _ = server.wait();
    ok(&o);
    let out = dir.path().join("out");
    same_as_window(&out, "plugin:web");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["plugins"]["web"]["transport"], "http");
}

#[test]
fn a_plugins_model_calls_are_metered_counted_and_identical_on_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["hybrid", "plugin:tutorial"],
        &plugin(
            "tutorial",
            "examples/plugins/tutorial.py",
            "params = { summary_trigger_tokens = 300, buffer_message_limit = 6 }",
        ),
    );
    let scenarios = ["dbt-fanout-support", "returning-renovation"];
    ok(&run(dir.path(), &cfg, "a", &scenarios, &[]));
    ok(&run(dir.path(), &cfg, "b", &scenarios, &[]));
    let a = dir.path().join("a");
    let calls = rows(&a.join("calls.csv"));
    let plugin_calls = |kind: &str| {
        calls
            .iter()
            .filter(|r| r["strategy"] == "plugin:tutorial" && r["kind"] == kind)
            .count()
    };
    assert!(
        plugin_calls("summarize") > 0,
        "the plugin's summaries are calls"
    );
    assert!(
        plugin_calls("embed") > 0,
        "the plugin's embeddings are calls"
    );
    let turns = rows_of(&a, "turns.csv", "plugin:tutorial");
    let spent = |col: &str| {
        turns
            .iter()
            .map(|r| r[col].parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert!(spent("summarizer_tokens") > 0 && spent("embedding_tokens") > 0);
    let summaries = rows_of(&a, "summaries.csv", "plugin:tutorial");
    assert!(!summaries.is_empty(), "the plugin's summaries are scored");
    let strip = |d: &Path| {
        let mut f = output_files(d);
        f.retain(|k, _| !k.starts_with("plugins"));
        f
    };
    assert_eq!(
        strip(&a),
        strip(&dir.path().join("b")),
        "a rerun is byte-identical"
    );
}

#[test]
fn through_the_openai_backend_a_plugins_calls_are_cached_and_never_see_the_key() {
    const KEY: &str = "sk-test-Zq8vX2mN4pL7rT1w-plugin";
    let server = Server::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["plugin:tutorial", "plugin:spy"],
        &format!(
            r#"backend = "openai"
[model]
name = "gpt-4o-mini"
[openai]
base_url = "{}"
api_key_env = "MEMEVAL_TEST_KEY"
cache_path = "{}"
retry_backoff_ms = 1
answer_probes = false
{}{}"#,
            server.url,
            dir.path().join("cache.sqlite").display(),
            plugin(
                "tutorial",
                "examples/plugins/tutorial.py",
                "params = { summary_trigger_tokens = 300, buffer_message_limit = 6 }",
            ),
            plugin(
                "spy",
                "tests/plugins/faulty.py",
                "params = { max_tokens = 4000 }"
            ),
        ),
    );
    let go = |out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args(["run", &shipped("dbt-fanout-support"), "--config"])
            .arg(&cfg)
            .args(["--out", out, "--no-timings", "--quiet"])
            .current_dir(dir.path())
            .env("MEMEVAL_TEST_KEY", KEY)
            .output()
            .unwrap()
    };
    ok(&go("a"));
    let sent = server.requests();
    assert!(sent > 0, "the plugin's calls reached the API");
    ok(&go("b"));
    assert_eq!(
        server.requests(),
        sent,
        "the rerun is served from the cache"
    );
    let calls = rows(&dir.path().join("b/calls.csv"));
    let mine: Vec<_> = calls
        .iter()
        .filter(|r| r["strategy"] == "plugin:tutorial")
        .collect();
    assert!(mine.iter().any(|r| r["kind"] == "summarize"));
    assert!(mine.iter().all(|r| r["cached"] == "1"), "{mine:?}");
    let spy = log(&dir.path().join("a"), "spy");
    assert!(spy.contains("key seen: (none)"), "{spy}");
    assert!(spy.contains("base url: http://127.0.0.1:"), "{spy}");
    for (name, bytes) in output_files(&dir.path().join("a")) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "{name} holds the key"
        );
    }
}

#[test]
fn a_plugin_whose_program_is_missing_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &["window", "plugin:gone"],
        "[plugins.gone]\ncommand = [\"./no-such-plugin\"]\n",
    );
    let o = run(dir.path(), &cfg, "out", &["travel-multihop"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plugins.gone.command: no program"), "{err}");
    assert!(!dir.path().join("out").exists());
    assert!(!dir.path().join(".out.partial").exists());
}

#[test]
fn a_plugin_strategy_without_its_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["window", "plugin:nope"], "");
    let o = run(dir.path(), &cfg, "out", &["travel-multihop"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no [plugins.nope] section"), "{err}");
    assert!(!dir.path().join("out").exists());
}

/// The Python of a virtualenv with LangChain and mem0 (.ci/run makes it:
/// `MEMEVAL_PLUGIN_PYTHON`). In CI (`MEMEVAL_REQUIRE_PLUGINS=1`) its
/// absence fails the test; elsewhere the test says it skips.
fn third_party_python() -> Option<String> {
    let python = std::env::var("MEMEVAL_PLUGIN_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var("MEMEVAL_REQUIRE_PLUGINS").is_err(),
            "MEMEVAL_REQUIRE_PLUGINS is set but MEMEVAL_PLUGIN_PYTHON is not"
        );
        eprintln!(
            "SKIPPED: set MEMEVAL_PLUGIN_PYTHON to a Python with langchain-core, langchain-openai and mem0ai (see .ci/run)"
        );
    }
    python
}

#[test]
fn langchain_and_mem0_memories_are_measured_through_the_protocol() {
    let Some(py) = third_party_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = |f: &str| root().join(f).display().to_string();
    let section = |name: &str, f: &str, extra: &str| {
        format!(
            "[plugins.{name}]\ncommand = [{py:?}, {:?}]\n{extra}\n",
            file(f)
        )
    };
    let cfg = config(
        dir.path(),
        &["window", "plugin:lc-trim", "plugin:lc-summary", "plugin:mem0"],
        &[
            section(
                "lc-trim",
                "examples/plugins/langchain_memory.py",
                "params = { mode = \"trim\", max_tokens = 600 }",
            ),
            section(
                "lc-summary",
                "examples/plugins/langchain_memory.py",
                "params = { mode = \"summary\", max_tokens = 600 }\nrestart_between_sessions = true",
            ),
            section(
                "mem0",
                "examples/plugins/mem0_memory.py",
                "params = { infer = false, recent = 4, top_k = 5 }\nrestart_between_sessions = true\ntimeout_ms = 120000",
            ),
        ]
        .concat(),
    );
    let scenarios = ["dbt-fanout-support", "returning-renovation"];
    ok(&run(dir.path(), &cfg, "a", &scenarios, &[]));
    let a = dir.path().join("a");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(a.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["plugins"]["lc-trim"]["name"], "langchain-trim");
    assert_eq!(meta["plugins"]["mem0"]["name"], "mem0");
    let calls = rows(&a.join("calls.csv"));
    let count = |k: &str, kind: &str| {
        calls
            .iter()
            .filter(|r| r["strategy"] == k && r["kind"] == kind)
            .count()
    };
    // LangChain's summaries went through ChatOpenAI to the endpoint; mem0's
    // embeddings through its OpenAI embedder.
    assert!(count("plugin:lc-summary", "summarize") > 0);
    assert_eq!(count("plugin:lc-trim", "summarize"), 0);
    assert!(count("plugin:mem0", "embed") > 0);
    let summaries = rows_of(&a, "summaries.csv", "plugin:lc-summary");
    assert!(!summaries.is_empty(), "LangChain's summaries are scored");
    // Retrieval by mem0 shows as retrieved messages with provenance.
    let retrieved: u64 = rows_of(&a, "turns.csv", "plugin:mem0")
        .iter()
        .map(|r| r["retrieved_messages"].parse::<u64>().unwrap())
        .sum();
    assert!(retrieved > 0);
    for k in ["plugin:lc-trim", "plugin:lc-summary", "plugin:mem0"] {
        let probes = rows_of(&a, "probes.csv", k);
        assert!(!probes.is_empty(), "{k}");
        assert!(probes.iter().all(|p| p["leaked"] == "0"), "{k}");
    }
    // Restarted between sessions, they come back from their own storage:
    // a rerun is the same.
    ok(&run(dir.path(), &cfg, "b", &scenarios, &[]));
    for k in ["plugin:lc-summary", "plugin:mem0"] {
        assert_eq!(
            rows_of(&a, "turns.csv", k),
            rows_of(&dir.path().join("b"), "turns.csv", k),
            "{k}"
        );
    }
}

#[test]
fn a_naive_cut_between_calls_and_results_is_caught_and_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(
        d,
        &["window", "plugin:naive"],
        &plugin("naive", "tests/plugins/naive_cut.py", "params = { n = 3 }"),
    );
    let o = run(d, &cfg, "out", &["support-orders", "travel-booking"], &[]);
    ok(&o);
    let out = d.join("out");
    // The built-in window keeps calls with their results; the naive cut
    // leaves results without calls and calls without results.
    for (strategy, bad) in [("window", false), ("plugin:naive", true)] {
        let turns = rows_of(&out, "turns.csv", strategy);
        let probes = rows_of(&out, "probes.csv", strategy);
        let malformed = |rows: &[std::collections::BTreeMap<String, String>]| {
            rows.iter().filter(|r| r["malformed"] != "0").count()
        };
        let (t, p) = (malformed(&turns), malformed(&probes));
        assert_eq!(
            t > 0 && p > 0,
            bad,
            "{strategy}: {t} turns, {p} probes malformed"
        );
        for r in results_of(&out, strategy) {
            let calls = r["malformed_calls"].as_u64().unwrap();
            assert_eq!(calls > 0, bad, "{strategy}: {r}");
        }
    }
    // Exactly where: in support-orders, message 6 calls two tools and 7
    // and 8 are their results. After message 8 the last 3 messages are
    // the call and its results: whole; after message 9 they are 7-9, two
    // results without their call.
    let turns = rows_of(&out, "turns.csv", "plugin:naive");
    let at = |n: &str| {
        turns
            .iter()
            .find(|r| r["scenario"] == "support-orders" && r["turn"] == n)
            .unwrap()["malformed"]
            .clone()
    };
    assert_eq!(at("8"), "0");
    assert_ne!(at("9"), "0");
    // The gate fails on it, naming the check; the window passes it.
    let o = memeval(&["gate", "--baseline", "out", "--current", "out"], d);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(!fails.is_empty(), "{text}");
    assert!(
        fails
            .iter()
            .all(|l| l.contains("malformed") && l.contains("plugin:naive")),
        "{text}"
    );
    // Allowed where a team says so.
    std::fs::write(d.join("lax.toml"), "[gate]\nmax_malformed = 1000\n").unwrap();
    let o = memeval(
        &[
            "gate",
            "--baseline",
            "out",
            "--current",
            "out",
            "--config",
            "lax.toml",
        ],
        d,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
