//! The `powerpulse` binary: parses the command line and hands it to [`cli`].

mod cli;

use clap::Parser;

/// The pipeline allocates a `String` per field of every message; mimalloc
/// halves what glibc's malloc costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main(cli::Cli::parse())
}
