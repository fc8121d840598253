#![no_main]
//! See `ncd_fuzz_checks::proxy_sni` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ncd_fuzz_checks::check_proxy_sni(data));
