//! Every rule of SCENARIO_FORMAT.md answered with a bad file: the real
//! binary names the file, the line:column, the JSON path and the problem,
//! exits with 2, and writes nothing.

use std::path::{Path, PathBuf};

mod common;
use common::memeval;

/// A minimal valid scenario body, for cases that only break one part.
const OK_TURNS: &str = r#""turns": [{"role": "user", "content": "hi"}]"#;

/// (case name, file text, expected fragments of the error output).
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        ("empty", String::new(), vec!["empty"]),
        ("invalid-json", "{\"name\": \"x\",\n  turns: []}".into(), vec![":2:3:", "quoted key"]),
        ("trailing-comma", format!("{{\"name\": \"x\", {OK_TURNS},}}"), vec![":1:", "trailing commas are not JSON"]),
        ("truncated", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\"".into(), vec!["truncated"]),
        ("duplicate-key", format!("{{\"name\": \"x\",\n \"name\": \"y\", {OK_TURNS}}}"), vec![":2:2:", "duplicate key \"name\""]),
        ("deep-nesting", format!("{{\"name\": \"x\", \"description\": {}}}", "[".repeat(100_000)), vec!["nested deeper"]),
        ("control-char", "{\"name\": \"a\u{1}b\"}".into(), vec![":1:12:", "control character"]),
        ("not-an-object", "[1, 2]".into(), vec![":1:1: $: expected a scenario (an object), found an array"]),
        ("format-2", format!("{{\"format\": 2, \"name\": \"x\", {OK_TURNS}}}"), vec![":1:12: $.format: format 2 is not supported"]),
        ("format-type", format!("{{\"format\": \"1\", \"name\": \"x\", {OK_TURNS}}}"), vec!["$.format: expected a number (1 or 1.1), found a string"]),
        ("name-missing", format!("{{{OK_TURNS}}}"), vec!["missing required field \"name\""]),
        ("name-chars", format!("{{\"name\": \"has space\", {OK_TURNS}}}"), vec!["$.name: \"has space\" is not a valid name"]),
        ("name-long", format!("{{\"name\": \"{}\", {OK_TURNS}}}", "a".repeat(129)), vec!["$.name:", "1 to 128"]),
        ("user-empty", format!("{{\"name\": \"x\", \"user\": \"  \", {OK_TURNS}}}"), vec!["$.user: must not be empty"]),
        ("unknown-field", format!("{{\"name\": \"x\",\n \"probs\": [], {OK_TURNS}}}"), vec![":2:2: $.probs: unknown field \"probs\"; did you mean \"probes\"?"]),
        ("both-turns-sessions", format!("{{\"name\": \"x\", \"sessions\": [{{{OK_TURNS}}}], {OK_TURNS}}}"), vec!["$.turns:", "either \"sessions\" or \"turns\", not both"]),
        ("no-conversation", "{\"name\": \"x\"}".into(), vec!["missing the conversation"]),
        ("facts-not-array", format!("{{\"name\": \"x\", \"facts\": {{}}, {OK_TURNS}}}"), vec!["$.facts: expected an array, found an object"]),
        ("fact-no-id", format!("{{\"name\": \"x\", \"facts\": [{{\"statement\": \"s\"}}], {OK_TURNS}}}"), vec!["$.facts[0]: missing required field \"id\""]),
        ("fact-dup-id", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\"}, {\"id\": \"a\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}]}".into(), vec!["$.facts[1].id: fact id \"a\" is already used"]),
        ("fact-expect-empty", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\", \"expect\": []}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}]}".into(), vec!["$.facts[0].expect: must list at least one phrase"]),
        ("fact-expect-type", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\", \"expect\": [3]}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}]}".into(), vec!["$.facts[0].expect[0]: expected a string, found a number"]),
        ("fact-unknown-field", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\", \"expects\": [\"a\"]}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}]}".into(), vec!["$.facts[0].expects: unknown field \"expects\"; did you mean \"expect\"?"]),
        ("supersedes-unknown", "{\"name\": \"x\", \"facts\": [{\"id\": \"wh\", \"supersedes\": \"wh-old\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"wh\"]}]}".into(), vec!["$.facts[0].supersedes: supersedes unknown fact \"wh-old\""]),
        ("supersedes-self", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\", \"supersedes\": \"a\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}]}".into(), vec!["cannot supersede itself"]),
        ("supersedes-cycle", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\", \"supersedes\": \"b\"}, {\"id\": \"b\", \"supersedes\": \"a\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\", \"b\"]}]}".into(), vec!["$.facts[0].supersedes: supersedes forms a cycle"]),
        ("fact-never-planted", "{\"name\": \"x\",\n \"facts\": [{\"id\": \"a\"}],\n \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}]}".into(), vec![":2:12: $.facts[0]: fact \"a\" is never planted"]),
        ("session-no-turns", "{\"name\": \"x\", \"sessions\": [{\"id\": \"s\"}]}".into(), vec!["$.sessions[0]: missing required field \"turns\""]),
        ("session-empty-turns", "{\"name\": \"x\", \"sessions\": [{\"turns\": []}]}".into(), vec!["$.sessions[0].turns: must hold at least one message or probe"]),
        ("sessions-empty", "{\"name\": \"x\", \"sessions\": []}".into(), vec!["$.sessions: must hold at least one session"]),
        ("session-dup-id", format!("{{\"name\": \"x\", \"sessions\": [{{\"id\": \"a\", {OK_TURNS}}}, {{\"id\": \"a\", {OK_TURNS}}}]}}"), vec!["$.sessions[1].id: session id \"a\" is already used"]),
        ("session-bad-start", format!("{{\"name\": \"x\", \"sessions\": [{{\"start\": \"Monday\", {OK_TURNS}}}]}}"), vec!["$.sessions[0].start: \"Monday\" is not an RFC 3339 timestamp"]),
        ("session-bad-date", format!("{{\"name\": \"x\", \"sessions\": [{{\"start\": \"2025-02-30T10:00:00Z\", {OK_TURNS}}}]}}"), vec!["no such date"]),
        ("entry-neither", "{\"name\": \"x\", \"turns\": [{\"content\": \"hi\"}]}".into(), vec!["$.turns[0]: an entry needs \"role\" (a message) or \"probe\" (a probe)"]),
        ("entry-both", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"probe\": \"q\", \"expects\": []}]}".into(), vec!["not both"]),
        ("role-invalid", "{\"name\": \"x\", \"turns\": [{\"role\": \"system\", \"content\": \"hi\"}]}".into(), vec!["$.turns[0].role: role \"system\" is not \"user\", \"assistant\" or \"tool\""]),
        ("user-no-content", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\"}]}".into(), vec!["$.turns[0]: a user message needs \"content\""]),
        ("content-type", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": 5}]}".into(), vec!["$.turns[0].content: expected a string, found a number"]),
        ("message-unknown-field", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plant\": []}]}".into(), vec!["$.turns[0].plant: unknown field \"plant\"; did you mean \"plants\"?"]),
        ("plants-unknown", "{\"name\": \"x\", \"facts\": [{\"id\": \"name\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"nmae\", \"name\"]}]}".into(), vec!["$.turns[0].plants[0]: plants unknown fact \"nmae\", which \"facts\" does not declare; did you mean \"name\"?"]),
        ("plants-twice", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\", \"a\"]}]}".into(), vec!["$.turns[0].plants[1]: fact \"a\" is listed twice"]),
        ("generated-plants", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\"}], \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"plants\": [\"a\"]}, {\"role\": \"assistant\", \"plants\": [\"a\"]}]}".into(), vec!["$.turns[1].plants: a generated assistant reply cannot plant facts"]),
        ("at-invalid", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\", \"at\": \"yesterday\"}]}".into(), vec!["$.turns[0].at: \"yesterday\" is not an RFC 3339 timestamp"]),
        ("at-backwards", "{\"name\": \"x\", \"turns\": [\n{\"role\": \"user\", \"content\": \"hi\", \"at\": \"2025-01-02T00:00:00Z\"},\n{\"role\": \"user\", \"content\": \"hi\", \"at\": \"2025-01-01T00:00:00Z\"}]}".into(), vec![":3:41: $.turns[1].at: message 2 goes back in time: it is before message 1"]),
        ("session-start-backwards", "{\"name\": \"x\", \"sessions\": [\n{\"start\": \"2025-01-05T00:00:00Z\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}]},\n{\"start\": \"2025-01-01T00:00:00Z\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}]}]}".into(), vec!["$.sessions[1].start: the start of session \"s2\" goes back in time"]),
        ("probe-no-question", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"probe\": \"\", \"expects\": []}]}".into(), vec!["$.turns[1].probe: must not be empty"]),
        ("probe-no-expects", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"probe\": \"q?\"}]}".into(), vec!["$.turns[1]: missing required field \"expects\""]),
        ("probe-expects-unknown", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"probe\": \"q?\", \"expects\": [\"ghost\"]}]}".into(), vec!["$.turns[1].expects[0]: expects unknown fact \"ghost\""]),
        ("probe-before-plant", "{\"name\": \"x\", \"facts\": [{\"id\": \"a\"}], \"turns\": [\n{\"role\": \"user\", \"content\": \"hi\"},\n{\"probe\": \"q?\", \"expects\": [\"a\"]},\n{\"role\": \"user\", \"content\": \"a!\", \"plants\": [\"a\"]}]}".into(), vec![":3:29: $.turns[1].expects[0]: fact \"a\" is not planted before this probe: it is first planted by message 2"]),
        ("probe-every-inline", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"probe\": \"q?\", \"expects\": [], \"every\": 2}]}".into(), vec!["$.turns[1].every: \"every\" makes a recurring probe: move this probe to the top-level \"probes\" list"]),
        ("probe-dup-id", "{\"name\": \"x\", \"turns\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"probe\": \"q?\", \"id\": \"p2\", \"expects\": []}, {\"probe\": \"r?\", \"expects\": []}]}".into(), vec!["$.turns[2]: probe id \"p2\" is already used"]),
        ("recurring-no-every", format!("{{\"name\": \"x\", {OK_TURNS}, \"probes\": [{{\"probe\": \"q?\", \"expects\": []}}]}}"), vec!["$.probes[0]: missing required field \"every\""]),
        ("recurring-every-zero", format!("{{\"name\": \"x\", {OK_TURNS}, \"probes\": [{{\"probe\": \"q?\", \"expects\": [], \"every\": 0}}]}}"), vec!["$.probes[0].every: must be at least 1, not 0"]),
        ("recurring-every-fraction", format!("{{\"name\": \"x\", {OK_TURNS}, \"probes\": [{{\"probe\": \"q?\", \"expects\": [], \"every\": 2.5}}]}}"), vec!["$.probes[0].every: expected an integer, found 2.5"]),
        ("no-messages", "{\"name\": \"x\", \"turns\": [{\"probe\": \"q?\", \"expects\": []}]}".into(), vec!["the conversation has no messages"]),
    ]
}

fn write_case(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_rule_is_answered_with_file_position_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (name, text, wants) in cases() {
        let path = write_case(dir.path(), name, &text);
        let out = memeval(&["validate", path.to_str().unwrap()], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{name}: exit {:?}, stderr: {stderr}",
                out.status.code()
            ));
            continue;
        }
        if !stderr.contains(&format!("{name}.json")) {
            failures.push(format!("{name}: error does not name the file: {stderr}"));
        }
        for want in wants {
            if !stderr.contains(want) {
                failures.push(format!("{name}: missing {want:?} in: {stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn non_utf8_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.json");
    std::fs::write(&path, b"{\"name\": \"caf\xe9\"}").unwrap();
    let out = memeval(&["validate", "latin1.json"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("latin1.json:1:14: invalid UTF-8"),
        "{stderr}"
    );

    let out = memeval(&["validate", "nowhere.json"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere.json: cannot read"));
}

#[test]
fn every_error_of_every_file_is_listed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_case(
        dir.path(),
        "a",
        "{\"name\": \"a b\", \"turns\": [{\"role\": \"bot\", \"content\": \"hi\"}], \"extra\": 1}",
    );
    let b = write_case(
        dir.path(),
        "b",
        "{\"name\": \"b\", \"turns\": [{\"role\": \"user\"}]}",
    );
    let out = memeval(
        &["validate", a.to_str().unwrap(), b.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "$.name",
        "$.turns[0].role",
        "$.extra",
        "b.json",
        "a user message needs",
    ] {
        assert!(stderr.contains(want), "{want}: {stderr}");
    }
    assert!(stderr.contains("4 error(s)"), "{stderr}");
}

#[test]
fn run_level_rules_names_and_users_unique() {
    let dir = tempfile::tempdir().unwrap();
    let body = |name: &str, user: &str| {
        format!("{{\"name\": \"{name}\", \"user\": \"{user}\", {OK_TURNS}}}")
    };
    let a = write_case(dir.path(), "a", &body("same", "u1"));
    let b = write_case(dir.path(), "b", &body("same", "u2"));
    let c = write_case(dir.path(), "c", &body("other", "u1"));
    let out = memeval(
        &[
            "validate",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("b.json: $.name: scenario name \"same\" is also used by"),
        "{stderr}"
    );
    assert!(
        stderr.contains("c.json: $.user: user \"u1\" is also the user of"),
        "{stderr}"
    );
}

#[test]
fn run_with_a_bad_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_case(
        dir.path(),
        "good",
        &format!("{{\"name\": \"good\", {OK_TURNS}}}"),
    );
    let bad = write_case(dir.path(), "bad", "{\"name\": \"bad\", \"turns\": [}");
    let out = memeval(
        &[
            "run",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
            "--out",
            "out",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json:1:"));
    assert!(!dir.path().join("out").exists());
    // The default output folder is not created either.
    let out = memeval(&["run", bad.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("reports").exists());
    // Nor with a bad configuration.
    let out = memeval(
        &[
            "run",
            good.to_str().unwrap(),
            "--set",
            "summary.trigger_tokns=10",
            "--out",
            "out",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did you mean \"trigger_tokens\""),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(memeval(&["run"], dir.path()).status.code(), Some(2));
    assert_eq!(memeval(&["frobnicate"], dir.path()).status.code(), Some(2));
    let out = memeval(
        &["run", "x.json", "--strategies", "buffer,windw"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn huge_files_and_endless_streams_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    // 300 MiB (sparse: nothing is written to disk), over the 64 MiB limit.
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let mut inputs = vec![huge.display().to_string()];
    if Path::new("/dev/zero").exists() {
        // Its size is 0 to the file system, its stream endless.
        inputs.push("/dev/zero".into());
    }
    for input in inputs {
        let o = memeval(&["run", &input, "--out", "out"], dir.path());
        assert_eq!(o.status.code(), Some(2), "{input}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(&input) && e.contains("64 MiB"), "{e}");
        assert!(!dir.path().join("out").exists());
    }
}

#[test]
fn bad_configurations_are_explained_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_case(
        dir.path(),
        "good",
        &format!("{{\"name\": \"good\", {OK_TURNS}}}"),
    );
    let cases: &[(&str, &str)] = &[
        ("strategies = [\"hybird\"]", "did you mean \"hybrid\""),
        ("[memory]\nmax_context_tokens = -1", "max_context_tokens"),
        (
            "[window]\nmax_tokens = 0",
            "window.max_tokens is between 1 and 10000000, not 0",
        ),
        (
            "[summary]\ntrigger_tokens = 500000",
            "below the model's context window",
        ),
        (
            "[summary]\ntrigger_tokns = 100",
            "did you mean \"trigger_tokens\"",
        ),
        ("[vectr]\ntop_k = 3", "did you mean \"vector\""),
        ("backend = \"opena\"", "did you mean \"openai\""),
        (
            "[openai]\ntimeout_secs = 0",
            "openai.timeout_secs is between 0.001 and 3600, not 0",
        ),
        (
            "[openai]\nmax_concurrency = 0",
            "openai.max_concurrency is between 1 and 1024, not 0",
        ),
        (
            "[prices]\n\"gpt-4o\" = { input = -1.0, output = 2.0 }",
            "prices.gpt-4o.input is a price in USD per million tokens, between 0 and 1000000, not -1",
        ),
        ("[prices]\n\"gpt-4o\" = { inputs = 1.0 }", "unknown field"),
        ("seed = \"forty-two\"", "seed"),
        ("[summary\ntrigger_tokens = 1", "memeval.toml"),
    ];
    for (text, want) in cases {
        std::fs::write(dir.path().join("memeval.toml"), text).unwrap();
        let o = memeval(&["run", good.to_str().unwrap(), "--out", "out"], dir.path());
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {e}");
        assert!(e.contains(want), "{text}: {e}");
        assert!(!e.contains("panicked"), "{text}: {e}");
        assert!(!dir.path().join("out").exists(), "{text}");
    }
}

#[test]
fn scenario_names_cannot_write_outside_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    std::fs::create_dir_all(&root).unwrap();
    // "." and ".." are valid names ([A-Za-z0-9._-]{1,128}) that a file
    // system reads specially.
    let dot = write_case(&root, "dot", &format!("{{\"name\": \".\", {OK_TURNS}}}"));
    let dotdot = write_case(
        &root,
        "dotdot",
        &format!("{{\"name\": \"..\", \"user\": \"u2\", {OK_TURNS}}}"),
    );
    let o = memeval(
        &[
            "run",
            dot.to_str().unwrap(),
            dotdot.to_str().unwrap(),
            "--out",
            "out",
            "-q",
        ],
        &root,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The work folder holds the inputs and the run's folder, nothing else;
    // the charts of each scenario are in a folder of their own.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dot.json", "dotdot.json", "out"]);
    for d in ["%2E", "%2E%2E"] {
        assert!(
            root.join("out/charts")
                .join(d)
                .join("context.svg")
                .is_file(),
            "{d}"
        );
    }
    let top: Vec<String> = std::fs::read_dir(root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!top.iter().any(|n| n.ends_with(".svg")), "{top:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
