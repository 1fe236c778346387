//! Prints the ShardSet CRD as YAML (wired up in the operator issue).
fn main() {}
