//! The harness's programs, run to completion: kubectl, helm and kind from `SHARDSET_BIN_DIR` (never
//! the system's), docker, and the paths of the repository they are pointed at (charts, CRD).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// The harness's bin dir (kind, kubectl, helm); `make e2e` sets it, else they are looked up on PATH.
pub const BIN_DIR_ENV: &str = "SHARDSET_BIN_DIR";

/// A program from the harness's bin dir, or from PATH.
pub fn tool(name: &str) -> PathBuf {
    match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(name),
    }
}

/// A path of the repository (`rel` from its root), e.g. `charts/fake-discord`.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(rel)
}

/// Runs `cmd` (with `stdin` fed to it, if any) to its end; its stdout, or an error naming it as
/// `what` and holding its stderr and stdout.
pub(crate) fn run(what: &str, mut cmd: Command, stdin: Option<&str>) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("start {shown}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("run {shown}"))?;
    ok_stdout(what, out)
}

fn ok_stdout(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn program(name: &str, path: PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(path);
    cmd.args(args);
    run(&format!("{name} {}", args.join(" ")), cmd, None)
}

/// Runs the harness's kubectl with `args`; its stdout, or an error holding its stderr.
pub fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    program("kubectl", tool("kubectl"), args)
}

/// Runs the harness's helm with `args`; its stdout, or an error holding its stderr.
pub fn helm(args: &[&str]) -> anyhow::Result<String> {
    program("helm", tool("helm"), args)
}

/// `helm template release charts/<chart>` with `sets`: bare items are `--set` values, items
/// starting with `--` (`--set-string=...`) pass as they are. The rendered documents as text.
pub fn helm_template(chart: &str, sets: &[&str]) -> anyhow::Result<String> {
    let path = repo_path(&format!("charts/{chart}"));
    let path = path.to_string_lossy();
    let mut args = vec!["template", "release", path.as_ref()];
    for set in sets {
        if set.starts_with("--") {
            args.push(set);
        } else {
            args.extend(["--set", set]);
        }
    }
    helm(&args)
}

/// [`helm`] on a blocking thread, so that two installs run at once.
pub async fn helm_async(args: Vec<String>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(&args)
    })
    .await?
}

/// Runs docker with `args` (node-level scenarios: stop or start a kind node).
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    program("docker", PathBuf::from("docker"), args)
}
