//! Fuzz target: director.cfg parsing: never panics, every error names the file.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conpaas_fuzz::config(data));
