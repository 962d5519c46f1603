//! Many users through the memory registry, measured as a user runs it: the
//! real `memeval run` binary on a generated population, replayed
//! interleaved (round-robin, so every step finds its user evicted: the
//! registry's worst case) through `registry.max_active_users` live
//! memories, outputs, charts and report included. For each population size
//! it reports wall time, messages per second and the run's peak RSS, then
//! the memory each added user costs: what must stay flat for memory to be
//! bounded by the registry rather than by the number of users.
//!
//! It also reports each run's time per message replayed and how that grows
//! from the smallest population to the largest: flat means nothing a step
//! does grows with the population.
//!
//! Run: `cargo bench --bench scale` (250, 500 and 1,000 users x 200
//! messages, hybrid, 100 live memories: a few minutes).
//! `MEMEVAL_SCALE=USERS,...:MESSAGES:CAP:STRATEGIES[:CACHE_MB]` changes it,
//! e.g. the README's two million messages:
//! `MEMEVAL_SCALE=1000,10000:200:100:hybrid` (about half an hour), and
//! `...:hybrid:0` with no scenario kept loaded (`registry.scenario_cache_mb`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_memeval");

/// Peak resident set size of the largest child waited for so far, in MiB.
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn memeval(args: &[&str], dir: &Path) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("memeval runs");
    assert!(
        out.status.success(),
        "memeval {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `memeval run` in a child process of its own, so that the peak RSS
/// read back is that run's alone.
fn measured_run(dir: &Path, args: &[String]) -> (f64, f64) {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe().expect("this bench"))
        .env("MEMEVAL_SCALE_CHILD", args.join("\u{1f}"))
        .current_dir(dir)
        .output()
        .expect("the bench re-runs itself");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the child prints its peak RSS");
    (secs, rss)
}

fn main() {
    // In the child: run memeval, print its peak RSS.
    if let Ok(args) = std::env::var("MEMEVAL_SCALE_CHILD") {
        let args: Vec<&str> = args.split('\u{1f}').collect();
        memeval(&args, Path::new("."));
        println!("{}", children_peak_rss_mib());
        return;
    }
    let spec =
        std::env::var("MEMEVAL_SCALE").unwrap_or_else(|_| "250,500,1000:200:100:hybrid".into());
    let parts: Vec<&str> = spec.split(':').collect();
    let (users, messages, cap, strategies, cache) = match parts[..] {
        [u, m, c, s] => (u, m, c, s, None),
        [u, m, c, s, k] => (u, m, c, s, Some(k)),
        _ => panic!("MEMEVAL_SCALE=USERS,...:MESSAGES:CAP:STRATEGIES[:CACHE_MB], not {spec:?}"),
    };
    let users: Vec<u64> = users
        .split(',')
        .map(|u| u.parse().expect("users"))
        .collect();
    let messages: u64 = messages.parse().expect("messages");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    println!(
        "users x {messages} messages, {strategies}, {cap} live memories, round-robin (every step evicts):"
    );
    let mut points = Vec::new();
    for &n in &users {
        let pop = format!("pop-{n}");
        memeval(
            &[
                "generate",
                "--users",
                &n.to_string(),
                "--messages",
                &messages.to_string(),
                "--out",
                &pop,
            ],
            d,
        );
        let input_mib = std::fs::read_dir(d.join(&pop))
            .expect("population")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum::<u64>() as f64
            / (1 << 20) as f64;
        let mut args: Vec<String> = [
            "run",
            &pop,
            "--out",
            &format!("out-{n}"),
            "--quiet",
            "--strategies",
            strategies,
            "--set",
            &format!("registry.max_active_users={cap}"),
        ]
        .map(String::from)
        .to_vec();
        if let Some(mb) = cache {
            args.extend(["--set".into(), format!("registry.scenario_cache_mb={mb}")]);
        }
        let (secs, rss) = measured_run(d, &args);
        let replayed = n * messages * strategies.split(',').count() as u64;
        let us = secs * 1e6 / replayed as f64;
        println!(
            "{n:>6} users: {secs:>7.1} s, {:>6.0} messages/s ({us:.0} µs a message), peak RSS {rss:>6.0} MiB (scenario files {input_mib:.0} MiB)",
            replayed as f64 / secs
        );
        points.push((n as f64, rss, input_mib, us));
        std::fs::remove_dir_all(d.join(format!("out-{n}"))).expect("clean up");
    }
    if let (Some(first), Some(last)) = (points.first(), points.last())
        && last.0 > first.0
    {
        let per_user = (last.1 - first.1) / (last.0 - first.0) * 1024.0;
        let input_per_user = (last.2 - first.2) / (last.0 - first.0) * 1024.0;
        println!(
            "each added user: {per_user:.0} KiB of peak RSS, against {input_per_user:.0} KiB of scenario file"
        );
        println!(
            "time per message, {} users against {}: {:.2}x",
            last.0,
            first.0,
            last.3 / first.3
        );
    }
}
