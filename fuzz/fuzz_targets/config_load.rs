//! `Settings::load_with_env` over a fuzzed config file and environment
//! (see `ConfigInput::from_bytes` for the layout).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    powerpulse_fuzz::config_load(&powerpulse_fuzz::ConfigInput::from_bytes(data))
});
