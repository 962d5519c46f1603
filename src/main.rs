//! The `memeval` binary: everything lives in the library.

/// mimalloc: a replay allocates and frees a few small buffers per message
/// (readings, rows, contexts), about a tenth of its time in glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    memeval::cli::main()
}
