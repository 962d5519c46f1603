//! The `memeval` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    memeval::cli::main()
}
