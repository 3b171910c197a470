//! Tests of the ca area.
