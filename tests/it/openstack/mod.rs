//! OpenStack: the native driver (Keystone v3, Nova v2.1, Neutron) against a faithful local
//! OpenStack, alone, under the director and in cpscheck; the fake itself checked with
//! OpenStack's own SDK.

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cpscheck;
mod director;
mod driver;
pub mod fake;
mod sdk;
