//! End-to-end tests of the `powerpulse` binary: real files, the real redb
//! file reopened afterwards, no network.

mod helpers;

mod analyze;
mod bad_input;
mod config;
mod export;
mod hostile;
mod ops;
