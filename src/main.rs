//! The `powerpulse` binary: parses the command line and hands it to [`cli`].

mod cli;

use clap::Parser;

/// The pipeline allocates a `String` per field of every message; mimalloc
/// halves what glibc's malloc costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its index in `mi_option_e`, mimalloc v3;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc hands it back to the
/// OS. Its default, 10 ms, is shorter than the gap between two parse or
/// analysis batches, so every batch faulted its memory in again (5,900 page
/// faults, many of them 2 MiB pages zeroed by the kernel, for an
/// 8,000-conversation run; 500 with this). A second still returns an idle
/// server's memory.
const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

fn main() -> std::process::ExitCode {
    // SAFETY: `mi_option_set` is not thread-safe; this is the first thing
    // `main` does, before the program starts any other thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    cli::main(cli::Cli::parse())
}
