//! Any bytes read as a WhatsApp chat export (`--format whatsapp`): the
//! date-order pass, then every message line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| powerpulse_fuzz::ingest_as(data, "txt", Some(powerpulse::ingest::Format::WhatsApp)));
