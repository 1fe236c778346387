//! What a scenario reports as it goes (timings, counts): straight to the process's stderr, past
//! the test harness's capture, so that the figures show in `make e2e` even when the test passes.

use std::io::Write as _;

/// `report!("...", args)`: one line `<scenario>: <text>` on stderr, where `<scenario>` is the test
/// binary's crate (the scenario file's name).
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::report::line(module_path!(), &format!($($arg)*))
    };
}

/// Writes `<scenario>: <text>`, `scenario` being the first segment of `module_path`.
pub fn line(module_path: &str, text: &str) {
    let scenario = module_path.split("::").next().unwrap_or(module_path);
    let _ = writeln!(std::io::stderr(), "{scenario}: {text}");
}
