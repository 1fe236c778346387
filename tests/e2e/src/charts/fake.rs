//! The fake Discord installed by its chart, seen through its control API (reached through the API
//! server's service proxy, as `kubectl get --raw` would): Identify log, sessions, violations, the
//! session budget, the synthetic message load and its reply log, and the waits on them. The fake
//! has no watch API: the waits poll and end as soon as what they wait for holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, bail};
/// The fake's records, as its control API answers them.
pub use fake_discord::control::{
    BudgetInfo, Counters, Fault, FaultRequest, FaultResult, IdentifyOutcome, IdentifyRecord,
    RepliesReport, SessionInfo, Target, Violation,
};
use kube::Client;
use serde::de::DeserializeOwned;

use crate::waits::{Look, poll};

/// How often the waits below look at the fake.
const POLL_SESSIONS: Duration = Duration::from_millis(250);
const POLL_REPLIES: Duration = Duration::from_millis(500);

/// The fake Discord's control API, through the API server's service proxy.
pub struct Fake {
    client: Client,
    base: String,
}

impl Fake {
    /// The control API of the Service `service` (port 8080) in namespace `ns`.
    pub fn new(client: Client, ns: &str, service: &str) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{ns}/services/http:{service}:8080/proxy/control"),
        }
    }

    /// `GET /control/<path>` as text.
    pub async fn raw(&self, path: &str) -> anyhow::Result<String> {
        let req = http::Request::get(format!("{}/{path}", self.base)).body(Vec::new())?;
        Ok(self.client.request_text(req).await?)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let text = self.raw(path).await?;
        serde_json::from_str(&text).with_context(|| format!("/control/{path}: {text}"))
    }

    /// `<method> /control/<path>` with a JSON body; the answer as text.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}/{path}", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body)?)?;
        Ok(self.client.request_text(req).await?)
    }

    /// Injects `fault` into the connections `target` selects; how many it reached.
    pub async fn inject(&self, fault: Fault, target: Target) -> anyhow::Result<u32> {
        let body = serde_json::to_value(FaultRequest { fault, target })?;
        let text = self.send(http::Method::POST, "faults", &body).await?;
        let result: FaultResult =
            serde_json::from_str(&text).with_context(|| format!("/control/faults: {text}"))?;
        Ok(result.affected)
    }

    /// Every Identify the fake received, in order.
    pub async fn identifies(&self) -> anyhow::Result<Vec<IdentifyRecord>> {
        self.get("identifies").await
    }

    /// Every session, live or ended.
    pub async fn sessions(&self) -> anyhow::Result<Vec<SessionInfo>> {
        self.get("sessions").await
    }

    /// Every rule of Discord's a client broke.
    pub async fn violations(&self) -> anyhow::Result<Vec<Violation>> {
        self.get("violations").await
    }

    /// Connection and event counters.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        self.get("counters").await
    }

    /// Fails unless the fake recorded no violation at all.
    pub async fn assert_no_violations(&self, when: &str) -> anyhow::Result<()> {
        let v = self.violations().await?;
        if !v.is_empty() {
            bail!(
                "the fake Discord recorded {} violations {when}: {v:#?}",
                v.len()
            );
        }
        Ok(())
    }

    /// Waits until every shard of the layout `total` has a session that is READY and connected;
    /// returns those sessions.
    pub async fn wait_layout_live(
        &self,
        total: u32,
        timeout: Duration,
    ) -> anyhow::Result<Vec<SessionInfo>> {
        poll(
            &format!("every shard of layout {total} live in the fake"),
            timeout,
            POLL_SESSIONS,
            || async {
                let live = live_sessions(&self.sessions().await?, total);
                Ok(if live.len() == total as usize {
                    Look::Done(live.into_values().collect())
                } else {
                    Look::NotYet(format!(
                        "only shards {:?} are live",
                        live.keys().collect::<Vec<_>>()
                    ))
                })
            },
        )
        .await
    }

    /// Starts (or changes) the synthetic MESSAGE_CREATE load: `rate` messages per second over all
    /// guilds, `0` stops it.
    pub async fn set_load(&self, rate: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({"rate": rate, "payload_bytes": 256, "dm_percent": 0});
        self.send(http::Method::POST, "load", &body).await?;
        Ok(())
    }

    /// Sets the session starts left (`session_start_limit.remaining`).
    pub async fn set_budget(&self, remaining: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({"remaining": remaining});
        self.send(http::Method::POST, "budget", &body).await?;
        Ok(())
    }

    /// The budget as `/gateway/bot` answers it now.
    pub async fn budget(&self) -> anyhow::Result<BudgetInfo> {
        self.get("budget").await
    }

    /// For the synthetic messages created in `[since_ms, until_ms)`: how many got exactly one
    /// reply, none, or more.
    pub async fn replies(&self, since_ms: u64, until_ms: u64) -> anyhow::Result<RepliesReport> {
        self.get(&format!("replies?since_ms={since_ms}&until_ms={until_ms}"))
            .await
    }

    /// Waits until the load is answered: at least `at_least` messages were created since
    /// `since_ms` (counting those older than `lag_ms`, the time a reply may take) and each got
    /// exactly one reply. `who` names who should be answering, for the timeout's message.
    pub async fn wait_load_answered(
        &self,
        who: &str,
        since_ms: u64,
        lag_ms: u64,
        at_least: u32,
        timeout: Duration,
    ) -> anyhow::Result<RepliesReport> {
        poll(
            &format!("{who} answering the load"),
            timeout,
            POLL_REPLIES,
            || async {
                let r = self
                    .replies(since_ms, now_ms().saturating_sub(lag_ms))
                    .await?;
                Ok(
                    if r.messages >= u64::from(at_least) && r.exactly_once == r.messages {
                        Look::Done(r)
                    } else {
                        Look::NotYet(format!("{r:?}"))
                    },
                )
            },
        )
        .await
    }

    /// The reply log of `[since_ms, until_ms)` once every message of it is answered, or as it is
    /// after `timeout` (the caller judges it): replies still on their way are counted.
    pub async fn replies_settled(
        &self,
        since_ms: u64,
        until_ms: u64,
        timeout: Duration,
    ) -> anyhow::Result<RepliesReport> {
        let deadline = tokio::time::Instant::now() + timeout;
        poll("replies settled", timeout, POLL_REPLIES, || async {
            let r = self.replies(since_ms, until_ms).await?;
            Ok(if r.none == 0 || tokio::time::Instant::now() >= deadline {
                Look::Done(r)
            } else {
                Look::NotYet(format!("{r:?}"))
            })
        })
        .await
    }

    /// Fails unless `replies` (the reply log of `[since_ms, until_ms)`) counts messages and each got
    /// exactly one reply; the error says when the unanswered ones were created.
    pub async fn ensure_each_answered_once(
        &self,
        replies: &RepliesReport,
        since_ms: u64,
        until_ms: u64,
    ) -> anyhow::Result<()> {
        if replies.none > 0 || replies.multiple > 0 {
            let span = self.unanswered_span(since_ms, until_ms).await?;
            bail!(
                "{} messages unanswered (created between {span:?}), {} answered more than once: {replies:?}",
                replies.none,
                replies.multiple
            );
        }
        anyhow::ensure!(
            replies.exactly_once == replies.messages && replies.messages > 0,
            "{replies:?}"
        );
        Ok(())
    }

    /// Fails unless every session of layout `total` ended for good (closed 1000 by a retired
    /// layout): none is connected, none can be resumed.
    pub async fn ensure_layout_ended(&self, total: u32) -> anyhow::Result<()> {
        let left: Vec<SessionInfo> = self
            .sessions()
            .await?
            .into_iter()
            .filter(|s| s.num_shards == total && (s.connected || s.resumable_until_ms.is_some()))
            .collect();
        anyhow::ensure!(left.is_empty(), "layout {total} sessions left: {left:#?}");
        Ok(())
    }

    /// The first and the last message created in `[since_ms, until_ms)` that got no reply (their
    /// creation times, ms), or `None` when every one was answered: the sample of a report lists
    /// the oldest unanswered first, and a binary search on `since_ms` finds the newest.
    pub async fn unanswered_span(
        &self,
        since_ms: u64,
        until_ms: u64,
    ) -> anyhow::Result<Option<(u64, u64)>> {
        let all = self.replies(since_ms, until_ms).await?;
        let Some(first) = all.unanswered_sample.first() else {
            return Ok(None);
        };
        let first = snowflake_ms(first)?;
        // Invariant: [lo, until) holds an unanswered message, [hi, until) none.
        let (mut lo, mut hi) = (first, until_ms);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.replies(mid, until_ms).await?.none > 0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Some((first, lo)))
    }
}

/// Unix time in ms (the fake stamps its messages on the same host clock: kind nodes are
/// containers of this machine).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Unix ms at which the fake created a message (its id is a snowflake stamped with it).
pub fn snowflake_ms(id: &str) -> anyhow::Result<u64> {
    let id: u64 = id.parse().with_context(|| format!("message id {id}"))?;
    Ok((id >> 22) + 1_420_070_400_000)
}

/// The live (connected, READY) session of each shard of layout `total`, by shard id.
pub fn live_sessions(sessions: &[SessionInfo], total: u32) -> BTreeMap<u32, SessionInfo> {
    sessions
        .iter()
        .filter(|s| s.num_shards == total && s.connected && s.ready)
        .map(|s| (s.shard, s.clone()))
        .collect()
}

/// Identifies of layout `total` for the shards in `shards`.
pub fn identifies_of(records: &[IdentifyRecord], total: u32, shards: &BTreeSet<u32>) -> usize {
    records
        .iter()
        .filter(|r| r.num_shards == total && shards.contains(&r.shard))
        .count()
}

/// Fails unless every shard in `before` has the same session in `after`, resumed at least once
/// more: a session that moved (pod replaced, node lost, image rolled) resumed, it did not identify.
pub fn ensure_resumed(
    before: &BTreeMap<u32, SessionInfo>,
    after: &[SessionInfo],
    shards: impl IntoIterator<Item = u32>,
) -> anyhow::Result<()> {
    for shard in shards {
        let old = before.get(&shard).context("a live session before")?;
        let new = after
            .iter()
            .find(|s| s.shard == shard && s.num_shards == old.num_shards)
            .context("a live session after")?;
        anyhow::ensure!(
            new.session_id == old.session_id && new.resumes > old.resumes,
            "shard {shard} was not resumed: before {old:#?}, after {new:#?}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snowflake_carries_its_creation_ms() {
        // Discord's documented example: 175928847299117063 was created 2016-04-30 11:18:25.796 UTC.
        assert_eq!(
            snowflake_ms("175928847299117063").expect("a snowflake"),
            1_462_015_105_796
        );
        assert!(snowflake_ms("not a number").is_err());
    }
}
