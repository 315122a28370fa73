//! `gantry-operator`: the command line.

fn main() {}
