//! OpenNebula: the OCCI driver against a faithful local OCCI server, alone and under the
//! director (`spec/clouds.md` §7, §10.1).

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cpscheck;
mod director;
mod driver;
pub mod fake;
