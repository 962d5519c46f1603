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
//! `MEMEVAL_SCALE=1000,10000,1000,10000,1000:200:100:hybrid` (about 20
//! minutes; the sizes interleaved, so that the machine's drift shows and
//! falls on both), and
//! `...:hybrid:0` with no scenario kept loaded (`registry.scenario_cache_mb`).
//! With `MEMEVAL_SCALE_PAIRED=1` (two sizes), the largest runs once while
//! the smallest runs again and again beside it, on the other core: the
//! two meet the same machine, which a sequential sitting cannot promise.

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
    let mut run = Run {
        dir: d,
        messages,
        cap,
        strategies,
        cache,
        input_mib: Default::default(),
    };
    for &n in &users {
        if !run.input_mib.contains_key(&n) {
            let mib = run.population(n);
            run.input_mib.insert(n, mib);
        }
    }
    let paired = std::env::var_os("MEMEVAL_SCALE_PAIRED").is_some();
    let points = if paired {
        run.paired(&users)
    } else {
        users.iter().map(|&n| run.point(n, "")).collect()
    };
    growth(&points);
}

/// How the populations are run.
struct Run<'a> {
    dir: &'a Path,
    messages: u64,
    cap: &'a str,
    strategies: &'a str,
    cache: Option<&'a str>,
    /// Each population's scenario files, in MiB (generated before any run).
    input_mib: std::collections::HashMap<u64, f64>,
}

impl Run<'_> {
    /// Generates population `n`; its scenario files' size in MiB.
    fn population(&self, n: u64) -> f64 {
        let pop = format!("pop-{n}");
        let (users, messages) = (n.to_string(), self.messages.to_string());
        let args = [
            "generate",
            "--users",
            &users,
            "--messages",
            &messages,
            "--out",
            &pop,
        ];
        memeval(&args, self.dir);
        std::fs::read_dir(self.dir.join(&pop))
            .expect("population")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum::<u64>() as f64
            / (1 << 20) as f64
    }

    /// Runs population `n` once (its outputs in a folder named with `tag`),
    /// and prints what it measured.
    fn point(&self, n: u64, tag: &str) -> Point {
        let input_mib = self.input_mib[&n];
        let out = format!("out-{n}{tag}");
        let mut args: Vec<String> = [
            "run",
            &format!("pop-{n}"),
            "--out",
            &out,
            "--quiet",
            "--strategies",
            self.strategies,
            "--set",
            &format!("registry.max_active_users={}", self.cap),
        ]
        .map(String::from)
        .to_vec();
        if let Some(mb) = self.cache {
            args.extend(["--set".into(), format!("registry.scenario_cache_mb={mb}")]);
        }
        let (secs, cpu, rss) = measured_run(self.dir, &args);
        let replayed = (n * self.messages * self.strategies.split(',').count() as u64) as f64;
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
        std::fs::remove_dir_all(self.dir.join(out)).expect("clean up");
        point
    }

    /// The largest population run once while the smallest runs again and
    /// again beside it (one core each), so that both meet the same
    /// machine: a drift of its speed (this one's moves by a fifth within
    /// the hour) falls on both alike instead of deciding the ratio. Only
    /// the small runs that ended while the large one ran count.
    fn paired(&self, users: &[u64]) -> Vec<Point> {
        let small = *users.iter().min().expect("a population");
        let large = *users.iter().max().expect("a population");
        assert!(small < large, "MEMEVAL_SCALE_PAIRED needs two sizes");
        println!("{large} users once, and {small} users again and again beside it:");
        let running = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|scope| {
            let big = scope.spawn(|| {
                let p = self.point(large, "");
                running.store(false, std::sync::atomic::Ordering::SeqCst);
                p
            });
            let mut points = Vec::new();
            for k in 0.. {
                let p = self.point(small, &format!("-{k}"));
                if !running.load(std::sync::atomic::Ordering::SeqCst) {
                    println!(
                        "(the last {small}-user run ended after the {large}-user one: not counted)"
                    );
                    break;
                }
                points.push(p);
            }
            points.push(big.join().expect("the large run"));
            points
        })
    }
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
/// smallest population to the largest. A size run more than once (listed
/// twice, e.g. `1000,10000,1000,10000,1000`, interleaved so that the
/// machine's drift falls on both, or paired) is summed up by its runs'
/// mean, fastest and median, with every run's figure: the spread shows
/// how far one sitting can be trusted. Paired, the mean is the measure:
/// the small runs' mean covers the same span of time as the one large run.
fn growth(points: &[Point]) {
    let at = |users: f64, f: fn(&Point) -> f64| {
        let mut v: Vec<f64> = points.iter().filter(|p| p.users == users).map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &[f64]| (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0;
    let sizes = points.iter().map(|p| p.users);
    let (small, large) = (
        sizes.clone().fold(f64::MAX, f64::min),
        sizes.fold(0.0, f64::max),
    );
    if large <= small {
        return;
    }
    let per_user = |f: fn(&Point) -> f64| {
        (mean(&at(large, f)) - mean(&at(small, f))) / (large - small) * 1024.0
    };
    println!(
        "each added user: {:.0} KiB of peak RSS, against {:.0} KiB of scenario file",
        per_user(|p| p.rss),
        per_user(|p| p.input_mib)
    );
    for (what, f) in [
        ("wall", (|p| p.wall_us) as fn(&Point) -> f64),
        ("CPU", |p| p.cpu_us),
    ] {
        let (s, l) = (at(small, f), at(large, f));
        let spread = |v: &[f64]| {
            let list: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            list.join(", ")
        };
        let (s_mean, l_mean) = (mean(&s), mean(&l));
        println!(
            "time per message ({what}), {large} users against {small}: {:.2}x mean to mean, {:.2}x fastest to fastest, {:.2}x median to median (µs a message: {} | {})",
            l_mean / s_mean,
            l[0] / s[0],
            median(&l) / median(&s),
            spread(&s),
            spread(&l),
        );
    }
}
