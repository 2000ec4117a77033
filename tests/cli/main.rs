//! End-to-end tests of the `powerpulse` binary: real files, the real redb
//! file reopened afterwards, no network beyond loopback (a spawned `serve`,
//! the fake OpenAI server).

mod helpers;

mod access;
mod analyze;
mod bad_input;
mod config;
mod export;
mod exports;
mod hostile;
mod leaks;
mod ops;
mod server;
mod upkeep;
