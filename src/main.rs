//! The `powerpulse` binary: parses the command line and hands it to [`cli`].

mod cli;

use clap::Parser;

/// The pipeline allocates a `String` per field of every message; mimalloc
/// halves what glibc's malloc costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    cli::main(cli::Cli::parse())
}

/// Turns transparent huge pages off for this process (where the system has
/// them on `always`). mimalloc gives each thread its own heap, and a
/// thread's first touch of a 2 MiB region faulted in, and had the kernel
/// zero, a whole huge page: an 8,000-conversation run peaked at 88–104 MiB
/// with about 50 MiB in use, and zeroing was 8 % of its CPU time. (Freed
/// memory stays mapped for a second, mimalloc v3's default, so batches do
/// not fault their memory in again.)
///
/// This runs in `main`, after the first allocation has set up mimalloc's
/// arena; that is why mimalloc is built with `no_thp` (`Cargo.toml`): it
/// would otherwise `madvise` the arena into huge pages, which a system on
/// `madvise` (the usual default) then faults in one zeroed 2 MiB page at a
/// time, 10–16 ms at the start of every run.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and only sets a
    // flag on this process; a kernel without it returns an error, ignored.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn transparent_huge_pages_are_off() {
        super::no_transparent_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE takes no argument and returns the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }
}
