//! The real HTTP server on 127.0.0.1 (a random port), a real redb file, and
//! where the LLM matters the project's fake OpenAI server.

#[path = "../../examples/support/synth.rs"]
mod synth;

mod helpers;

mod access;
mod alerts;
mod endpoints;
mod exports;
mod guards;
mod insights;
mod leaks;
mod lifecycle;
mod notify;
mod search;
