//! Any bytes saved as `.zip` and uploaded: unpacking under its limits,
//! then every export inside.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::ingest_file(data, "zip"));
