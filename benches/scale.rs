//! Many users through the memory registry, measured as a user runs it: the
//! real `memeval run` binary on a generated population, replayed
//! interleaved (round-robin, so every step finds its user evicted: the
//! registry's worst case) through `registry.max_active_users` live
//! memories, outputs, charts and report included. For each population size
//! it reports wall time, messages per second and the run's peak RSS, then
//! the memory each added user costs: what must stay flat for memory to be
//! bounded by the registry rather than by the number of users.
//!
//! It also reports each run's time per message replayed, wall and CPU
//! (user and system; less sensitive to a busy or throttled machine), and
//! how that grows from the smallest population to the largest: flat means
//! nothing a step does grows with the population.
//!
//! Run: `cargo bench --bench scale` (250, 500 and 1,000 users x 200
//! messages, hybrid, 100 live memories: a few minutes).
//! `MEMEVAL_SCALE=USERS,...:MESSAGES:CAP:STRATEGIES[:CACHE_MB]` changes it,
//! e.g. the README's two million messages:
//! `MEMEVAL_SCALE=1000,10000,1000:200:100:hybrid` (about 20 minutes; the
//! smallest population twice, before and after, so the machine's drift
//! shows, and averaged), and
//! `...:hybrid:0` with no scenario kept loaded (`registry.scenario_cache_mb`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_memeval");

/// Peak resident set size of the largest child waited for so far, in MiB,
/// and the CPU time (user + system) of all children waited for, in seconds.
fn children_usage() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        usage.ru_maxrss as f64 / 1024.0,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    )
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
/// and CPU time read back are that run's alone: (wall s, CPU s, peak MiB).
fn measured_run(dir: &Path, args: &[String]) -> (f64, f64, f64) {
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut usage = stdout
        .split_whitespace()
        .map(|v| v.parse::<f64>().expect("the child prints its usage"));
    let (rss, cpu) = (usage.next().expect("RSS"), usage.next().expect("CPU"));
    (secs, cpu, rss)
}

fn main() {
    // In the child: run memeval, print its peak RSS.
    if let Ok(args) = std::env::var("MEMEVAL_SCALE_CHILD") {
        let args: Vec<&str> = args.split('\u{1f}').collect();
        memeval(&args, Path::new("."));
        let (rss, cpu) = children_usage();
        println!("{rss} {cpu}");
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
    let mut points: Vec<Point> = Vec::new();
    for &n in &users {
        let pop = format!("pop-{n}");
        if !d.join(&pop).exists() {
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
        }
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
        let (secs, cpu, rss) = measured_run(d, &args);
        let replayed = (n * messages * strategies.split(',').count() as u64) as f64;
        let point = Point {
            users: n as f64,
            rss,
            input_mib,
            wall_us: secs * 1e6 / replayed,
            cpu_us: cpu * 1e6 / replayed,
        };
        println!(
            "{n:>6} users: {secs:>7.1} s wall, {cpu:>7.1} s CPU, {:>6.0} messages/s ({:.0} µs a message wall, {:.0} CPU), peak RSS {rss:>6.0} MiB (scenario files {input_mib:.0} MiB)",
            replayed / secs,
            point.wall_us,
            point.cpu_us,
        );
        points.push(point);
        std::fs::remove_dir_all(d.join(format!("out-{n}"))).expect("clean up");
    }
    growth(&points);
}

/// One run of a population: its size, peak RSS and input in MiB, time per
/// message replayed in µs.
struct Point {
    users: f64,
    rss: f64,
    input_mib: f64,
    wall_us: f64,
    cpu_us: f64,
}

/// What each added user costs and how time per message grows from the
/// smallest population to the largest. A size listed more than once (e.g.
/// `1000,10000,1000`, to show the machine's drift) is averaged.
fn growth(points: &[Point]) {
    let mean = |users: f64, f: fn(&Point) -> f64| {
        let at: Vec<f64> = points.iter().filter(|p| p.users == users).map(f).collect();
        at.iter().sum::<f64>() / at.len() as f64
    };
    let sizes = points.iter().map(|p| p.users);
    let (small, large) = (
        sizes.clone().fold(f64::MAX, f64::min),
        sizes.fold(0.0, f64::max),
    );
    if large <= small {
        return;
    }
    let per_user =
        |f: fn(&Point) -> f64| (mean(large, f) - mean(small, f)) / (large - small) * 1024.0;
    println!(
        "each added user: {:.0} KiB of peak RSS, against {:.0} KiB of scenario file",
        per_user(|p| p.rss),
        per_user(|p| p.input_mib)
    );
    println!(
        "time per message, {large} users against {small}: {:.2}x wall, {:.2}x CPU",
        mean(large, |p| p.wall_us) / mean(small, |p| p.wall_us),
        mean(large, |p| p.cpu_us) / mean(small, |p| p.cpu_us),
    );
}
