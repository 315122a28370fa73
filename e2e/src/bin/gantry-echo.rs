//! Echo backend.

fn main() {}
