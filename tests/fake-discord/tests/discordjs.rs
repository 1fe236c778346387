//! Conformance with a second client written by others: an unmodified @discordjs/ws 2 (and
//! @discordjs/rest) from npm, pointed at the fake through its REST base URL. The node script
//! `conformance/discordjs/conformance.mjs` drives the client; this test starts the fake, runs
//! the script (after `npm ci` from the committed lock file when `node_modules` is missing), and
//! checks both what the client saw and what the fake recorded.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use fake_discord::control::{IdentifyOutcome, Rule};
use fake_discord::{Config, FakeDiscord, RunningFake};
use serde_json::Value;

const TOKEN: &str = "discordjs-conformance-token";

fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance/discordjs")
}

/// `npm ci` once per test binary, when the packages are not installed yet.
fn install() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = script_dir();
            if dir.join("node_modules/@discordjs/ws").exists() {
                return Ok(());
            }
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .map_err(|e| {
                    format!("cannot run npm (Node.js 20+ is needed for this test): {e}")
                })?;
            status
                .success()
                .then_some(())
                .ok_or_else(|| format!("npm ci failed in {}: {status}", dir.display()))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

async fn spawn(config: Config) -> RunningFake {
    FakeDiscord::spawn(
        Config {
            token: Some(TOKEN.into()),
            ..config
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("fake starts")
}

/// Runs the script in `mode` with `shards` shards; returns its report and whether it succeeded.
async fn run(fake: &RunningFake, mode: &str, shards: u32) -> anyhow::Result<(Value, bool)> {
    install()?;
    let child = tokio::process::Command::new("node")
        .arg("conformance.mjs")
        .current_dir(script_dir())
        .env("FAKE_API", fake.api_url())
        .env("FAKE_CONTROL", fake.control_url())
        .env("TOKEN", TOKEN)
        .env("SHARDS", shards.to_string())
        .env("MODE", mode)
        .env("TIMEOUT_MS", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run node (Node.js 20+ is needed for this test)")?;
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("the node script did not finish")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        bail!("no report from the node script: {stdout}");
    };
    Ok((serde_json::from_str(line)?, output.status.success()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_shards_get_ready_every_guild_resume_and_reply() -> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 40,
        max_concurrency: 4,
        ..Config::default()
    })
    .await;
    let (report, ok) = run(&fake, "full", 4).await?;
    ensure!(ok, "discord.js run failed: {report}");

    let ready = report["ready"].as_object().context("ready")?;
    ensure!(ready.len() == 4, "{report}");
    let mut total = 0;
    for (shard, guilds) in ready {
        let shard: u32 = shard.parse()?;
        let mut expected: Vec<&str> = guilds
            .as_array()
            .context("guilds")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut created: Vec<&str> = report["guilds"][shard.to_string()]
            .as_array()
            .context("guild creates")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        expected.sort_unstable();
        created.sort_unstable();
        ensure!(
            expected == created,
            "shard {shard}: READY {expected:?} vs GUILD_CREATE {created:?}"
        );
        for guild in created {
            ensure!(fake_discord::rules::shard_for_guild(guild.parse()?, 4) == shard);
        }
        total += expected.len();
    }
    ensure!(total == 40, "every guild once: {total}");
    let mut resumed: Vec<u64> = report["resumed"]
        .as_array()
        .context("resumed")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    resumed.sort_unstable();
    resumed.dedup();
    ensure!(resumed == vec![0, 1, 2, 3], "{report}");
    ensure!(
        report["replied"]["to"] == report["message"]["id"],
        "{report}"
    );

    let state = fake.state();
    let counters = state.counters();
    ensure!(
        counters.identifies == 4 && counters.resumes == 4,
        "{counters:?}"
    );
    ensure!(state.violations().is_empty(), "{:?}", state.violations());
    let replies = state.replies_report(0, u64::MAX / 2);
    ensure!(
        replies.exactly_once == 1 && replies.multiple == 0,
        "{replies:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_fast_discordjs_identifier_is_caught() -> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 4,
        max_concurrency: 1,
        ..Config::default()
    })
    .await;
    let (report, _) = run(&fake, "too-fast", 2).await?;
    let violations = fake.state().violations();
    ensure!(
        violations.iter().any(|v| v.rule == Rule::IdentifyTooFast),
        "no violation; client saw {report}"
    );
    Ok(())
}

/// discord.js's own throttler with more shards than buckets: it waits 5 s from its grant plus
/// up to 1.5 s of jitter. Reports the arrival gaps the strict fake measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discordjs_with_more_shards_than_buckets_reports_what_the_strict_fake_sees()
-> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 8,
        max_concurrency: 2,
        ..Config::default()
    })
    .await;
    let (report, ok) = run(&fake, "buckets", 6).await?;
    ensure!(ok, "discord.js run failed: {report}");
    let state = fake.state();
    let log = state.identifies();
    let mut last = std::collections::BTreeMap::new();
    println!("@discordjs/ws SimpleIdentifyThrottler, 6 shards, max_concurrency 2, window 5000 ms:");
    for record in &log {
        let gap = last
            .get(&record.bucket)
            .map(|&prev: &u64| {
                format!(
                    "{:.3} ms after the bucket's previous",
                    (record.at_us - prev) as f64 / 1_000.0
                )
            })
            .unwrap_or_else(|| "first in its bucket".into());
        println!(
            "  shard {} bucket {} {:?}: {gap}",
            record.shard, record.bucket, record.outcome
        );
        if record.outcome == IdentifyOutcome::Accepted {
            last.insert(record.bucket, record.at_us);
        }
    }
    println!("  violations: {:?}", state.violations());
    Ok(())
}
