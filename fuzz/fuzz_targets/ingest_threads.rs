//! Any bytes read as threaded posts (`--format threads`): the linking
//! pass, then every row.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::ingest_as(data, "csv", Some(powerpulse::ingest::Format::Threads)));
