//! The `latentd` binary.

fn main() {}
