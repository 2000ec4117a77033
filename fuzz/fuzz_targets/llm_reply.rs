//! A hostile LLM server's reply body: `analyze::openai::reply::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::llm_reply(data));
