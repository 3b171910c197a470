//! OpenNebula 5.x-7.x: the XML-RPC driver against a faithful local oned endpoint, alone, under
//! the director and in cpscheck, and that endpoint checked against OpenNebula's own client
//! (pyone) and schemas (vm.xsd, vm_pool.xsd).

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cpscheck;
mod director;
mod driver;
pub mod fake;
mod pyone;
