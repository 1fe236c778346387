//! Conformance with a real client written by others: an unmodified twilight-gateway 0.18 from
//! crates.io, pointed at the fake through its `proxy_url` setting, with its REST client
//! (twilight-http) pointed at the fake's `/gateway/bot`. Every event is parsed into
//! twilight-model's typed structs, which refuse payloads that lack documented fields.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fake_discord::control::{IdentifyOutcome, Rule};
use fake_discord::{Config, FakeDiscord, RunningFake};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use twilight_gateway::queue::{InMemoryQueue, Queue};
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};
use twilight_model::gateway::payload::incoming::GuildCreate;

const TOKEN: &str = "twilight-conformance-token";
const WAIT: Duration = Duration::from_secs(60);

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

/// What a shard saw.
#[derive(Debug)]
enum Seen {
    Ready { guilds: BTreeSet<u64> },
    Guild(u64),
    Resumed,
    Error(String),
}

/// Runs each shard in its own task, reporting what it sees until the returned sender drops.
fn run_shards<Q>(
    shards: Vec<Shard<Q>>,
) -> (
    mpsc::UnboundedReceiver<(u32, Seen)>,
    Vec<tokio::task::JoinHandle<()>>,
)
where
    Q: Queue + Send + Sync + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = shards
        .into_iter()
        .map(|mut shard| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let id = shard.id().number();
                while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
                    let seen = match item {
                        Ok(Event::Ready(ready)) => Seen::Ready {
                            guilds: ready.guilds.iter().map(|g| g.id.get()).collect(),
                        },
                        Ok(Event::GuildCreate(create)) => match *create {
                            GuildCreate::Available(guild) => Seen::Guild(guild.id.get()),
                            GuildCreate::Unavailable(g) => {
                                Seen::Error(format!("unavailable {}", g.id))
                            }
                        },
                        Ok(Event::Resumed) => Seen::Resumed,
                        Ok(_) => continue,
                        // Receive errors are reported; twilight reconnects by itself.
                        Err(e) => Seen::Error(format!("{e}: {:?}", std::error::Error::source(&e))),
                    };
                    if tx.send((id, seen)).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    (rx, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilight_shards_get_ready_every_guild_and_resume_after_op7() -> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 40,
        max_concurrency: 4,
        ..Config::default()
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = twilight_http::Client::builder()
        .proxy(fake.addr().to_string(), true)
        .token(TOKEN.into())
        .build();
    let info = http.gateway().authed().await?.model().await?;
    assert_eq!(info.url, fake.gateway_url());
    let limit = info.session_start_limit;
    assert_eq!(limit.max_concurrency, 4);

    // As many shards as buckets: all may Identify at once.
    let queue = InMemoryQueue::new(
        limit.max_concurrency as u16,
        limit.remaining as u32,
        Duration::from_millis(limit.reset_after),
        limit.total as u32,
    );
    let config = ConfigBuilder::new(
        TOKEN.into(),
        Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT,
    )
    .proxy_url(fake.gateway_url())
    .queue(queue)
    .build();
    let shards: Vec<Shard<InMemoryQueue>> = twilight_gateway::bucket(0, 1, 4)
        .map(|id: ShardId| Shard::with_config(id, config.clone()))
        .collect();
    let (mut rx, tasks) = run_shards(shards);

    let mut ready: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut created: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let complete = |ready: &BTreeMap<u32, BTreeSet<u64>>,
                    created: &BTreeMap<u32, BTreeSet<u64>>| {
        ready.len() == 4
            && ready
                .iter()
                .all(|(shard, guilds)| created.get(shard) == Some(guilds))
    };
    tokio::time::timeout(WAIT, async {
        while !complete(&ready, &created) {
            match rx.recv().await {
                Some((shard, Seen::Ready { guilds })) => {
                    ready.insert(shard, guilds);
                }
                Some((shard, Seen::Guild(id))) => {
                    created.entry(shard).or_default().insert(id);
                }
                Some((shard, Seen::Error(e))) => panic!("shard {shard}: {e}"),
                Some((shard, other)) => panic!("shard {shard}: unexpected {other:?}"),
                None => panic!("shards stopped"),
            }
        }
    })
    .await?;
    let total: usize = created.values().map(BTreeSet::len).sum();
    assert_eq!(total, 40, "every guild exactly once across the shards");
    for (shard, guilds) in &created {
        for &guild in guilds {
            assert_eq!(fake_discord::rules::shard_for_guild(guild, 4), *shard);
        }
    }

    // op 7 to every shard: twilight reconnects to resume_gateway_url and resumes.
    let affected: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/faults", fake.control_url()))
        .json(&json!({"kind": "reconnect"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(affected["affected"], 4);
    let mut resumed = BTreeSet::new();
    tokio::time::timeout(WAIT, async {
        while resumed.len() < 4 {
            match rx.recv().await {
                Some((shard, Seen::Resumed)) => {
                    resumed.insert(shard);
                }
                Some((shard, Seen::Error(e))) => panic!("shard {shard}: {e}"),
                Some((shard, other)) => panic!("shard {shard}: unexpected {other:?}"),
                None => panic!("shards stopped"),
            }
        }
    })
    .await?;

    let state = fake.state();
    let counters = state.counters();
    assert_eq!((counters.identifies, counters.resumes), (4, 4));
    assert_eq!(state.violations(), vec![]);
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// A queue that grants every Identify at once: a deliberately too-fast identifier.
#[derive(Clone, Debug)]
struct NoWait;

impl Queue for NoWait {
    fn enqueue(&self, _shard: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(());
        rx
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_fast_twilight_identifier_is_caught() -> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 4,
        max_concurrency: 1,
        ..Config::default()
    })
    .await;
    let config = ConfigBuilder::new(TOKEN.into(), Intents::GUILDS)
        .proxy_url(fake.gateway_url())
        .queue(NoWait)
        .build();
    let shards: Vec<Shard<NoWait>> = twilight_gateway::bucket(0, 1, 2)
        .map(|id| Shard::with_config(id, config.clone()))
        .collect();
    let (_rx, tasks) = run_shards(shards);
    let state = fake.state();
    tokio::time::timeout(WAIT, async {
        while !state
            .violations()
            .iter()
            .any(|v| v.rule == Rule::IdentifyTooFast)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let identifies = state.identifies();
    let accepted = identifies
        .iter()
        .filter(|r| r.outcome == IdentifyOutcome::Accepted)
        .count();
    assert_eq!(accepted, 1, "one bucket, one window: {identifies:?}");
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// With more shards than buckets, twilight's queue spaces grants 5 s apart, but the fake
/// measures the window between Identify *arrivals*. This test reports what a strict fake sees;
/// it asserts only that every shard ends up READY (twilight retries after op 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilight_with_more_shards_than_buckets_reports_what_the_strict_fake_sees()
-> anyhow::Result<()> {
    let fake = spawn(Config {
        guilds: 8,
        max_concurrency: 2,
        ..Config::default()
    })
    .await;
    let config = ConfigBuilder::new(TOKEN.into(), Intents::GUILDS)
        .proxy_url(fake.gateway_url())
        .queue(InMemoryQueue::new(
            2,
            1_000,
            Duration::from_secs(86_400),
            1_000,
        ))
        .build();
    let shards: Vec<Shard<InMemoryQueue>> = twilight_gateway::bucket(0, 1, 6)
        .map(|id| Shard::with_config(id, config.clone()))
        .collect();
    let (mut rx, tasks) = run_shards(shards);
    let mut ready = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(90), async {
        while ready.len() < 6 {
            if let Some((shard, Seen::Ready { .. })) = rx.recv().await {
                ready.insert(shard);
            }
        }
    })
    .await?;
    let state = fake.state();
    let log = state.identifies();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    println!("twilight InMemoryQueue, 6 shards, max_concurrency 2, window 5000 ms (arrivals):");
    for record in &log {
        let gap = last
            .get(&record.bucket)
            .map(|&prev| {
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
    let early = state
        .violations()
        .iter()
        .filter(|v| v.rule == Rule::IdentifyTooFast)
        .count();
    println!(
        "  identify_too_fast violations: {early} of {} Identifies",
        log.len()
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}
