//! `shardset-operator` binary (wired up in the operator issue).
fn main() {
    eprintln!("shardset-operator: not built yet");
    std::process::exit(2);
}
