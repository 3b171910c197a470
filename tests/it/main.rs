//! End-to-end tests of the director (one binary, modules per area).
