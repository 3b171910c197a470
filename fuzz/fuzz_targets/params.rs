//! Fuzz target: request parameters (query string, urlencoded and multipart bodies): never panics.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conpaas_fuzz::params(data));
