//! `gantry-proxy`: the command line.

fn main() {}
