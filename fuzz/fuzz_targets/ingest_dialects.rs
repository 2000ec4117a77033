//! Any bytes read by one of the chat-app and helpdesk JSON readers (the
//! first byte picks which).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::ingest_dialect(data));
