//! Any bytes saved as `.xlsx` and uploaded: `ingest::open`, then every row.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::ingest_file(data, "xlsx"));
