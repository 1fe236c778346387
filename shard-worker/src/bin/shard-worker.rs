//! The default shard worker binary (wired up in the worker issue).
fn main() {
    eprintln!("shard-worker: not built yet");
    std::process::exit(2);
}
