//! `director`: the ConPaaS director's command line (placeholder).
fn main() {}
