//! Fuzz target: reading ConPaaS attributes from a client certificate: never panics.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conpaas_fuzz::cert_identity(data));
