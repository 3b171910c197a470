//! Tests of the vpn area.
