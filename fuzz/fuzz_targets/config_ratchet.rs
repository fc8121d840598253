#![no_main]
//! See `ncd_fuzz_checks::config_ratchet` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ncd_fuzz_checks::check_config_ratchet(data));
