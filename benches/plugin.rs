//! The plugin protocol's cost: the Python window plugin
//! (examples/plugins/window.py, over stdio) against the built-in window on
//! the same generated scenario, per message.
//!
//! - `wall`: a whole replay's wall time (the plugin's Python included,
//!   and its process start);
//! - `rust_cpu`: the CPU time of memeval's own process alone (its
//!   children's excluded), so that `python_window` minus `builtin_window`
//!   is what the Rust side of the protocol costs a message (serializing
//!   requests, the pipe, parsing replies, assembling and counting the
//!   context);
//! - 1,000 and 10,000 messages: the per-message cost stays flat.
//!
//! Run: `cargo bench --bench plugin` (needs python3); criterion prints
//! time per replay and messages per second ("thrpt").

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memeval::backend::offline;
use memeval::config;
use memeval::plugin::{Plugins, Setup};
use memeval::runner::{self, Runtime};
use memeval::scenario::{Scenario, generate};

fn scenario(messages: u32) -> Scenario {
    generate::scenario(&generate::GenerateOptions {
        name: format!("bench-{messages}"),
        messages,
        facts: 8,
        sessions: 3,
        every: 100,
        seed: 1,
        tools: false,
    })
    .expect("valid options")
}

/// CPU time of this process alone (user + system, or user only), not its
/// children's.
fn self_cpu(user_only: bool) -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    if user_only {
        tv(u.ru_utime)
    } else {
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

/// One replay of `s` through `strategy`, in a fresh folder.
fn replay(dir: &Path, cfg: &config::Config, s: &[Scenario]) {
    let backend = offline::backend(cfg.offline.embedding_dim as usize);
    let run = tempfile::tempdir_in(dir).expect("run dir");
    let store = run.path().join("memory.sqlite");
    let plugins = Plugins::start(&Setup {
        config: cfg,
        backend: &backend,
        run_dir: run.path(),
        command_dir: Path::new(env!("CARGO_MANIFEST_DIR")),
    })
    .expect("plugins");
    let mut rt = Runtime::plain(cfg, &backend, &store).expect("runtime");
    rt.plugins = Some(&plugins);
    runner::run(s, &rt).expect("replay");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let window = config::load(None, &["strategies=[\"window\"]".into()]).expect("config");
    let python = config::load(
        None,
        &[
            "strategies=[\"plugin:pywindow\"]".into(),
            "plugins.pywindow.command=[\"python3\", \"examples/plugins/window.py\"]".into(),
            "plugins.pywindow.params.max_tokens=4000".into(),
        ],
    )
    .expect("config");
    // What is measured: wall time, memeval's CPU time (user + system), or
    // its user time alone (its own code, without the kernel's pipe and
    // scheduling work).
    for (group_name, cpu) in [
        ("wall", None),
        ("rust_cpu", Some(false)),
        ("rust_user_cpu", Some(true)),
    ] {
        let mut group = c.benchmark_group(format!("plugin_{group_name}"));
        group.sample_size(10);
        for n in [1_000u32, 10_000] {
            let s = [scenario(n)];
            group.throughput(Throughput::Elements(u64::from(n)));
            for (name, cfg) in [("builtin_window", &window), ("python_window", &python)] {
                group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                    b.iter_custom(|iters| {
                        let user_only = cpu == Some(true);
                        let (cpu0, wall0) = (self_cpu(user_only), std::time::Instant::now());
                        for _ in 0..iters {
                            replay(dir.path(), cfg, &s);
                        }
                        match cpu {
                            Some(_) => self_cpu(user_only) - cpu0,
                            None => wall0.elapsed(),
                        }
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
