//! Fuzz target: VPN planning: an allocated subnet lies in the network and overlaps no recorded one.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conpaas_fuzz::vpn_plan(data));
