//! `fake-discord` binary (built in the fake Discord issue).
fn main() {
    eprintln!("fake-discord: not built yet");
    std::process::exit(2);
}
