//! A hostile server's rate-limit headers: `retry_after`, `parse_duration`,
//! `Limits::observe` (`analyze::openai::limits`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::rate_limit_headers(data));
