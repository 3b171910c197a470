//! Fuzz target: agent CSR parsing and signature check (`/ca/get_cert.php`): never panics.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conpaas_fuzz::csr(data));
