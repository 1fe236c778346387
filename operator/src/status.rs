//! The ShardSet status, without a client: counts from the plan, facts from Discord and Redis,
//! the reshard's step, and the conditions, with reasons a user can act on:
//! - `Available` (the Deployment convention): the bot handles events. A layout that acts on
//!   events has all its shards in Ready pods but at most one pod's worth (`shardsPerPod`), the
//!   disruption a rolling update or a drain makes one pod at a time (its shards resume, and
//!   Discord replays what they missed). It stays True through a BlueGreen reshard, whose old
//!   layout acts until the new one does; a Recreate's gap makes it False.
//! - `Ready`: the target layout is fully up (every pod of it exists and is Ready).
//! - `Progressing`: what the operator is changing; `Resharding`: the reshard's step;
//!   `Degraded`: what is wrong.
//! - `BusAvailable` (with `spec.bus`): whether the worker pods can publish to the bus (`bus`).
//!
//! A condition keeps its `lastTransitionTime` while its status does not change, and fields that
//! drift by themselves (the budget's reset time) keep their old value within a tolerance, so that
//! an unchanged world produces an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{LayoutStatus, SessionStartLimitStatus, ShardSetStatus};
use crate::plan::Progress;
use crate::reshard::decision::Phase;
use crate::text::summarize_list;

pub mod bus;
mod problem;
pub use bus::BusReport;
pub use problem::Problem;

/// Condition types.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const RESHARDING: &str = "Resharding";
    pub const BUS_AVAILABLE: &str = super::bus::BUS_AVAILABLE;
}

/// Where the reshard stands, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardReport {
    pub phase: Phase,
    /// A stable description of the step (no countdowns: it is written into the status).
    pub message: String,
    /// `(from, to)` of a hand-over under way.
    pub handover: Option<(String, String)>,
    /// Revision of the roles document.
    pub revision: Option<u64>,
    /// The layout acting on events (the hand-over's source until it completes).
    pub current: Option<String>,
    /// Every layout with pods whose role lets it act on events (two while both claim).
    pub acting: Vec<String>,
}

/// `GET /gateway/bot` as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFacts {
    pub recommended_shards: u32,
    pub max_concurrency: u32,
    pub session_total: u32,
    pub session_remaining: u32,
    /// When the budget resets (fetch time + `reset_after`).
    pub reset_at: Timestamp,
}

/// Everything the status is made of.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub total: Option<u32>,
    pub target_layout: Option<String>,
    pub progress: Progress,
    pub problems: &'a [Problem],
    pub gateway: Option<&'a GatewayFacts>,
    /// `spec.maxConcurrency`, which wins over Discord's.
    pub max_concurrency_override: Option<u32>,
    pub application_id: Option<u64>,
    pub guilds: Option<u64>,
    /// Shards the workers report resuming after a silent (zombie) connection, as `shard 3 on
    /// <pod>`: named in `Ready`'s message while they heal.
    pub healing_shards: Vec<String>,
    pub selector: String,
    /// `spec.shardsPerPod`: one pod's worth of shards, what `Available` lets be missing.
    pub shards_per_pod: u32,
    /// The reshard decision of this pass (`None`: the roles in Redis could not be read).
    pub reshard: Option<ReshardReport>,
    /// With `spec.bus`: what the target layout's records say about publishing.
    pub bus: Option<BusReport>,
}

/// A budget reset time that moved less than this is not rewritten (each read of `reset_after`
/// gives a slightly different instant).
const RESET_AT_TOLERANCE: SignedDuration = SignedDuration::from_secs(120);

/// Builds the status; `previous` supplies transition times and tolerated values.
pub fn build(
    observed: &Observed<'_>,
    previous: Option<&ShardSetStatus>,
    now: Timestamp,
) -> ShardSetStatus {
    let p = &observed.progress;
    let session_start_limit = observed.gateway.map(|g| {
        let reset_at = previous
            .and_then(|s| s.session_start_limit.as_ref())
            .map(|s| s.reset_at.0)
            .filter(|old| old.duration_since(g.reset_at).abs() < RESET_AT_TOLERANCE)
            .unwrap_or(g.reset_at);
        SessionStartLimitStatus {
            total: g.session_total,
            remaining: g.session_remaining,
            reset_at: Time(reset_at),
        }
    });
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let conditions = conditions(observed)
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let last_transition_time = previous_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation: observed.generation,
                last_transition_time,
            }
        })
        .collect();

    ShardSetStatus {
        observed_generation: observed.generation,
        shards: observed.total,
        ready_shards: p.ready_shards,
        pods: p.owned_pods,
        ready_pods: p.owned_ready_pods,
        guilds: observed.guilds,
        recommended_shards: observed.gateway.map(|g| g.recommended_shards),
        max_concurrency: observed
            .max_concurrency_override
            .or(observed.gateway.map(|g| g.max_concurrency)),
        session_start_limit,
        application_id: observed.application_id.map(|id| id.to_string()),
        layout: observed.target_layout.as_ref().map(|target| {
            let previous = previous.and_then(|s| s.layout.as_ref());
            let reshard = observed.reshard.as_ref();
            LayoutStatus {
                current: reshard
                    .and_then(|r| r.current.clone())
                    .or_else(|| current_layout(target, p)),
                target: target.clone(),
                handover: reshard
                    .and_then(|r| r.handover.as_ref())
                    .map(|(from, to)| format!("{from}→{to}")),
                step: reshard
                    .filter(|r| r.phase.in_progress())
                    .map(|r| r.phase.reason().to_owned()),
                revision: reshard.and_then(|r| r.revision),
                target_since: Some(
                    previous
                        .filter(|l| l.target == *target)
                        .and_then(|l| l.target_since.clone())
                        .unwrap_or(Time(now)),
                ),
            }
        }),
        selector: Some(observed.selector.clone()),
        conditions,
    }
}

/// The layout that serves: the target once complete, else a complete older one.
fn current_layout(target: &str, p: &Progress) -> Option<String> {
    if p.desired_pods > 0 && p.target_complete() {
        Some(target.to_owned())
    } else {
        p.complete_old_layouts.last().cloned()
    }
}

type Cond = (&'static str, &'static str, &'static str, String);

fn conditions(o: &Observed<'_>) -> Vec<Cond> {
    let p = &o.progress;
    let blocking = o.problems.iter().find(|p| p.blocks_pods());
    let layout = o.target_layout.as_deref().unwrap_or("?");
    let refused = o.reshard.as_ref().filter(|r| r.phase.refused());

    let ready: Cond = if let Some(problem) = blocking {
        (
            condition::READY,
            "False",
            problem.reason(),
            problem.message().to_owned(),
        )
    } else if let Some(r) = refused {
        (
            condition::READY,
            "False",
            r.phase.reason(),
            r.message.clone(),
        )
    } else if p.desired_pods > 0 && p.target_complete() {
        let mut message = format!(
            "{} of {} shards ready in {} pods (layout {layout})",
            p.ready_shards, p.desired_shards, p.ready_pods
        );
        if p.old_layout_pods > 0 {
            message.push_str(&format!(
                "; {} pods of older layouts remain until the reshard ends",
                p.old_layout_pods
            ));
        }
        (condition::READY, "True", "AllShardsReady", message)
    } else if let Some(r) = o.reshard.as_ref().filter(|r| r.phase.in_progress()) {
        (
            condition::READY,
            "False",
            "Resharding",
            starting_layout(r, layout, p),
        )
    } else if p.old_layout_pods > 0 {
        (
            condition::READY,
            "False",
            "Resharding",
            format!(
                "layout {layout}: {} of {} shards ready, {} pods of older layouts remain",
                p.ready_shards, p.desired_shards, p.old_layout_pods
            ),
        )
    } else {
        (
            condition::READY,
            "False",
            "ShardsNotReady",
            format!(
                "{} of {} shards ready ({} of {} pods)",
                p.ready_shards, p.desired_shards, p.ready_pods, p.desired_pods
            ),
        )
    };

    let ready = with_healing(ready, &o.healing_shards);

    let progressing: Cond = if let Some(problem) = blocking {
        (
            condition::PROGRESSING,
            "False",
            problem.reason(),
            "no pods are created until the problem in the Degraded condition is fixed".into(),
        )
    } else if let Some(r) = refused {
        (
            condition::PROGRESSING,
            "False",
            r.phase.reason(),
            "the reshard was refused: see the Resharding condition".into(),
        )
    } else if p.settled() {
        (
            condition::PROGRESSING,
            "False",
            "Stable",
            format!(
                "layout {layout} runs {} shards in {} pods",
                p.desired_shards, p.desired_pods
            ),
        )
    } else if p.old_layout_pods > 0 {
        (
            condition::PROGRESSING,
            "True",
            "Resharding",
            format!(
                "moving to layout {layout}: {} pods of older layouts remain",
                p.old_layout_pods
            ),
        )
    } else if p.drifted_pods > 0 || p.outside_plan_pods > 0 {
        (
            condition::PROGRESSING,
            "True",
            "RollingUpdate",
            format!(
                "replacing pods one at a time: {} with a changed spec, {} with an old shard range",
                p.drifted_pods, p.outside_plan_pods
            ),
        )
    } else if p.present_pods < p.desired_pods {
        (
            condition::PROGRESSING,
            "True",
            "CreatingPods",
            format!("{} of {} pods exist", p.present_pods, p.desired_pods),
        )
    } else if p.terminating_pods > 0 {
        (
            condition::PROGRESSING,
            "True",
            "DeletingPods",
            format!("{} pods are terminating", p.terminating_pods),
        )
    } else {
        (
            condition::PROGRESSING,
            "True",
            "WaitingForPods",
            format!("{} of {} pods Ready", p.ready_pods, p.desired_pods),
        )
    };

    let resharding: Cond = match &o.reshard {
        None => (
            condition::RESHARDING,
            "Unknown",
            "RolesUnknown",
            "the layout roles in Redis (P:active-layout) could not be read".into(),
        ),
        Some(r) if r.phase.in_progress() => (
            condition::RESHARDING,
            "True",
            r.phase.reason(),
            r.message.clone(),
        ),
        Some(r) => (
            condition::RESHARDING,
            "False",
            r.phase.reason(),
            r.message.clone(),
        ),
    };

    let degraded: Cond = match o.problems {
        [] => (condition::DEGRADED, "False", "AsExpected", String::new()),
        [first, rest @ ..] => {
            let mut message = first.message().to_owned();
            for other in rest {
                message.push_str(&format!("; also {}: {}", other.reason(), other.message()));
            }
            (condition::DEGRADED, "True", first.reason(), message)
        }
    };

    let mut all = vec![ready, available(o), progressing, degraded, resharding];
    all.extend(
        bus::condition(o.bus.as_ref())
            .map(|(status, reason, message)| (condition::BUS_AVAILABLE, status, reason, message)),
    );
    all
}

/// `ready` with the shards healing a silent connection named in its message (their pods may
/// still count as Ready: a resume takes moments, the readiness probe several failures).
fn with_healing(ready: Cond, healing: &[String]) -> Cond {
    if healing.is_empty() {
        return ready;
    }
    let (type_, status, reason, mut message) = ready;
    message.push_str(&format!(
        "; resuming after a silent connection (no heartbeat ACK): {}",
        summarize_list(healing, 3)
    ));
    (type_, status, reason, message)
}

/// `Ready`'s message while a reshard brings the target layout up: what runs meanwhile depends
/// on the strategy (BlueGreen: the old layout acts; Recreate: nothing does).
fn starting_layout(r: &ReshardReport, layout: &str, p: &Progress) -> String {
    let ready = format!("{} of {} shards ready", p.ready_shards, p.desired_shards);
    match r.phase {
        Phase::StartingNewLayout => {
            let from = r
                .handover
                .as_ref()
                .map(|(from, _)| from.as_str())
                .or(r.current.as_deref())
                .unwrap_or("?");
            format!(
                "layout {layout} is starting in standby beside layout {from}, which acts on events meanwhile (BlueGreen): {ready}"
            )
        }
        Phase::StoppingOldLayout => format!(
            "layout {layout} starts once the old layout's pods are gone (Recreate: no layout acts on events meanwhile): {ready}"
        ),
        Phase::StartingLayout => format!("layout {layout} is starting: {ready}"),
        phase => format!("layout {layout}: {ready} (reshard step {})", phase.reason()),
    }
}

/// The `Available` condition (see the module doc): True when a layout that acts on events has
/// at most one pod's worth of shards outside Ready pods.
fn available(o: &Observed<'_>) -> Cond {
    let p = &o.progress;
    if let Some(problem) = o.problems.iter().find(|p| p.blocks_pods()) {
        return (
            condition::AVAILABLE,
            "False",
            problem.reason(),
            problem.message().to_owned(),
        );
    }
    // The layouts that act; with the roles unknown, any layout that has Ready pods.
    let acting: Vec<&str> = match &o.reshard {
        Some(r) => r.acting.iter().map(String::as_str).collect(),
        None => p
            .ready_shards_by_layout
            .keys()
            .map(String::as_str)
            .collect(),
    };
    let best = acting
        .iter()
        .filter_map(|layout| {
            let total = layout.parse::<u32>().ok().filter(|t| *t > 0)?;
            let ready = p.ready_shards_by_layout.get(*layout).copied().unwrap_or(0);
            Some((*layout, ready, total))
        })
        .max_by_key(|(_, ready, total)| (u64::from(*ready) * 1_000_000) / u64::from(*total));
    let Some((layout, ready, total)) = best else {
        let mut message = "no layout acts on events yet".to_owned();
        if let Some(r) = o.reshard.as_ref().filter(|r| r.phase.in_progress()) {
            message.push_str(&format!(" ({}: {})", r.phase.reason(), r.message));
        }
        return (condition::AVAILABLE, "False", "NoLayoutActing", message);
    };
    let allowed_missing = o.shards_per_pod.max(1);
    let also = if acting.len() > 1 {
        format!(
            " (layouts {} act during the hand-over)",
            acting.join(" and ")
        )
    } else {
        String::new()
    };
    if ready > 0 && ready.saturating_add(allowed_missing) >= total {
        (
            condition::AVAILABLE,
            "True",
            "MinimumShardsAvailable",
            format!(
                "layout {layout} acts on events with {ready} of {total} shards in Ready pods{also}"
            ),
        )
    } else {
        (
            condition::AVAILABLE,
            "False",
            "MinimumShardsUnavailable",
            format!(
                "layout {layout} acts on events with {ready} of {total} shards in Ready pods; at most {allowed_missing} (one pod's worth) may be missing{also}"
            ),
        )
    }
}

/// The `Degraded` condition's reason and message in `status`, if it is True.
/// `(status, message)` of the `BusAvailable` condition, if there is one.
pub fn bus_available(status: Option<&ShardSetStatus>) -> Option<(&str, &str)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::BUS_AVAILABLE)
        .map(|c| (c.status.as_str(), c.message.as_str()))
}

pub fn degraded(status: Option<&ShardSetStatus>) -> Option<(&str, &str)> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::DEGRADED && c.status == "True")
        .map(|c| (c.reason.as_str(), c.message.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    fn settled() -> Progress {
        Progress {
            desired_pods: 4,
            desired_shards: 10,
            present_pods: 4,
            ready_pods: 4,
            ready_shards: 10,
            owned_pods: 4,
            owned_ready_pods: 4,
            ready_shards_by_layout: [("10".to_string(), 10)].into(),
            ..Progress::default()
        }
    }

    fn observed(progress: Progress, problems: &[Problem]) -> Observed<'_> {
        Observed {
            generation: Some(3),
            total: Some(10),
            target_layout: Some("10".into()),
            progress,
            problems,
            selector: "shardset.io/shardset=bot".into(),
            shards_per_pod: 3,
            reshard: Some(report(Phase::Idle, &["10"])),
            ..Observed::default()
        }
    }

    fn report(phase: Phase, acting: &[&str]) -> ReshardReport {
        ReshardReport {
            phase,
            message: format!("step {}", phase.reason()),
            handover: None,
            revision: None,
            current: None,
            acting: acting.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn status_of(c: &Condition) -> (&str, &str) {
        (c.status.as_str(), c.reason.as_str())
    }

    fn cond<'a>(status: &'a ShardSetStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn settled_shardset_is_ready_and_stable() {
        let status = build(&observed(settled(), &[]), None, t(0));
        assert_eq!(status.shards, Some(10));
        assert_eq!(status.ready_shards, 10);
        assert_eq!(status.pods, 4);
        assert_eq!(status.observed_generation, Some(3));
        let ready = cond(&status, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "AllShardsReady")
        );
        assert_eq!(ready.message, "10 of 10 shards ready in 4 pods (layout 10)");
        assert_eq!(cond(&status, condition::PROGRESSING).reason, "Stable");
        assert_eq!(cond(&status, condition::DEGRADED).status, "False");
        let available = cond(&status, condition::AVAILABLE);
        assert_eq!(status_of(available), ("True", "MinimumShardsAvailable"));
        assert_eq!(
            available.message,
            "layout 10 acts on events with 10 of 10 shards in Ready pods"
        );
        assert_eq!(
            status.layout,
            Some(LayoutStatus {
                current: Some("10".into()),
                target: "10".into(),
                target_since: Some(Time(t(0))),
                ..Default::default()
            })
        );
    }

    #[test]
    fn unchanged_world_gives_an_identical_status() {
        let first = build(&observed(settled(), &[]), None, t(0));
        let again = build(&observed(settled(), &[]), Some(&first), t(60));
        assert_eq!(first, again, "no write in a steady state");
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let starting = Progress {
            ready_pods: 2,
            ready_shards: 6,
            owned_ready_pods: 2,
            ..settled()
        };
        let first = build(&observed(starting.clone(), &[]), None, t(0));
        let later = build(
            &observed(
                Progress {
                    ready_pods: 3,
                    ..starting
                },
                &[],
            ),
            Some(&first),
            t(5),
        );
        assert_eq!(
            cond(&later, condition::READY).last_transition_time,
            Time(t(0)),
            "still False: time kept though the message changed"
        );
        let ready = build(&observed(settled(), &[]), Some(&later), t(9));
        assert_eq!(
            cond(&ready, condition::READY).last_transition_time,
            Time(t(9))
        );
    }

    #[test]
    fn a_missing_secret_blocks_and_says_what_is_missing() {
        let problems = [Problem::TokenSecretMissing(
            "Secret \"bot-token\" not found in namespace \"ns\"".into(),
        )];
        let status = build(&observed(Progress::default(), &problems), None, t(0));
        for type_ in [condition::READY, condition::DEGRADED] {
            let c = cond(&status, type_);
            assert_eq!(c.reason, "TokenSecretMissing");
            assert!(c.message.contains("bot-token"), "{}", c.message);
        }
        assert_eq!(cond(&status, condition::READY).status, "False");
        assert_eq!(cond(&status, condition::DEGRADED).status, "True");
        assert_eq!(cond(&status, condition::PROGRESSING).status, "False");
    }

    #[test]
    fn non_blocking_problems_degrade_but_keep_ready() {
        let problems = [
            Problem::GatewayUnreachable("cannot reach the Discord API".into()),
            Problem::RedisUnreachable("connection refused".into()),
        ];
        let status = build(&observed(settled(), &problems), None, t(0));
        assert_eq!(cond(&status, condition::READY).status, "True");
        let degraded = cond(&status, condition::DEGRADED);
        assert_eq!(degraded.reason, "GatewayUnreachable");
        assert!(degraded.message.contains("also RedisUnreachable"));
        assert_eq!(
            super::degraded(Some(&status)).map(|d| d.0),
            Some("GatewayUnreachable")
        );
    }

    #[test]
    fn shards_healing_a_silent_connection_are_named_in_ready() {
        let healing = Observed {
            healing_shards: vec!["shard 3 on bot-10-3-5".into()],
            ..observed(settled(), &[])
        };
        let s = build(&healing, None, t(0));
        let ready = cond(&s, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "AllShardsReady")
        );
        assert!(
            ready.message.ends_with(
                "; resuming after a silent connection (no heartbeat ACK): shard 3 on bot-10-3-5"
            ),
            "{}",
            ready.message
        );
        // Healed: the message is as before, so the next pass writes it back.
        let s = build(&observed(settled(), &[]), Some(&s), t(1));
        assert!(!cond(&s, condition::READY).message.contains("silent"));
    }

    #[test]
    fn progress_reasons() {
        let creating = Progress {
            present_pods: 1,
            ready_pods: 1,
            ..settled()
        };
        let s = build(&observed(creating, &[]), None, t(0));
        assert_eq!(cond(&s, condition::PROGRESSING).reason, "CreatingPods");
        assert_eq!(cond(&s, condition::READY).reason, "ShardsNotReady");

        let resharding = Progress {
            old_layout_pods: 4,
            complete_old_layouts: vec!["8".into()],
            ready_pods: 0,
            ready_shards: 0,
            ..settled()
        };
        let s = build(&observed(resharding, &[]), None, t(0));
        assert_eq!(cond(&s, condition::PROGRESSING).reason, "Resharding");
        assert_eq!(cond(&s, condition::READY).reason, "Resharding");
        assert_eq!(s.layout.and_then(|l| l.current), Some("8".into()));

        let rolling = Progress {
            drifted_pods: 2,
            ..settled()
        };
        let s = build(&observed(rolling, &[]), None, t(0));
        assert_eq!(cond(&s, condition::PROGRESSING).reason, "RollingUpdate");
    }

    #[test]
    fn available_holds_through_a_blue_green_reshard_while_ready_follows_the_target() {
        // Layout 8 serves; layout 10 starts in standby beside it.
        let starting = Progress {
            present_pods: 2,
            ready_pods: 0,
            ready_shards: 0,
            old_layout_pods: 4,
            complete_old_layouts: vec!["8".into()],
            ready_shards_by_layout: [("8".to_string(), 8)].into(),
            ..settled()
        };
        let mut o = observed(starting, &[]);
        o.reshard = Some(ReshardReport {
            handover: Some(("8".into(), "10".into())),
            ..report(Phase::StartingNewLayout, &["8"])
        });
        let s = build(&o, None, t(0));
        let available = cond(&s, condition::AVAILABLE);
        assert_eq!(status_of(available), ("True", "MinimumShardsAvailable"));
        assert!(
            available.message.contains("layout 8 acts"),
            "{}",
            available.message
        );
        let ready = cond(&s, condition::READY);
        assert_eq!(status_of(ready), ("False", "Resharding"));
        assert_eq!(
            ready.message,
            "layout 10 is starting in standby beside layout 8, which acts on events meanwhile (BlueGreen): 0 of 10 shards ready"
        );

        // Both claim: both act, the new one is whole; the target is fully up, old pods remain.
        let claiming = Progress {
            old_layout_pods: 4,
            ready_shards_by_layout: [("8".to_string(), 8), ("10".to_string(), 10)].into(),
            ..settled()
        };
        let mut o = observed(claiming, &[]);
        o.reshard = Some(report(Phase::BothLayoutsClaiming, &["8", "10"]));
        let s = build(&o, Some(&s), t(20));
        assert_eq!(
            status_of(cond(&s, condition::AVAILABLE)),
            ("True", "MinimumShardsAvailable")
        );
        assert_eq!(
            cond(&s, condition::AVAILABLE).last_transition_time,
            Time(t(0)),
            "Available never changed"
        );
        let ready = cond(&s, condition::READY);
        assert_eq!(status_of(ready), ("True", "AllShardsReady"));
        assert!(
            ready
                .message
                .ends_with("4 pods of older layouts remain until the reshard ends")
        );
        assert_eq!(cond(&s, condition::PROGRESSING).reason, "Resharding");
    }

    #[test]
    fn a_recreate_has_a_gap_and_says_so() {
        let gap = Progress {
            present_pods: 0,
            ready_pods: 0,
            ready_shards: 0,
            old_layout_pods: 2,
            ready_shards_by_layout: [("4".to_string(), 4)].into(),
            ..settled()
        };
        let mut o = observed(gap, &[]);
        o.reshard = Some(report(Phase::StoppingOldLayout, &[]));
        let s = build(&o, None, t(0));
        let available = cond(&s, condition::AVAILABLE);
        assert_eq!(status_of(available), ("False", "NoLayoutActing"));
        assert!(
            available.message.contains("StoppingOldLayout"),
            "{}",
            available.message
        );
        let ready = cond(&s, condition::READY);
        assert_eq!(status_of(ready), ("False", "Resharding"));
        assert!(
            ready.message.contains("Recreate: no layout acts") && !ready.message.contains("beside"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn one_pod_down_keeps_available_and_two_do_not() {
        // A roll (or a drain) replaces one pod of 3 shards: 7 of 10 shards in Ready pods.
        let rolling = Progress {
            present_pods: 3,
            ready_pods: 3,
            ready_shards: 7,
            drifted_pods: 3,
            ready_shards_by_layout: [("10".to_string(), 7)].into(),
            ..settled()
        };
        let s = build(&observed(rolling, &[]), None, t(0));
        assert_eq!(status_of(cond(&s, condition::AVAILABLE)).0, "True");
        assert_eq!(
            status_of(cond(&s, condition::READY)),
            ("False", "ShardsNotReady")
        );
        assert_eq!(cond(&s, condition::PROGRESSING).reason, "RollingUpdate");

        let two_down = Progress {
            present_pods: 2,
            ready_pods: 2,
            ready_shards: 6,
            ready_shards_by_layout: [("10".to_string(), 6)].into(),
            ..settled()
        };
        let s = build(&observed(two_down, &[]), None, t(0));
        let available = cond(&s, condition::AVAILABLE);
        assert_eq!(status_of(available), ("False", "MinimumShardsUnavailable"));
        assert!(
            available.message.contains("6 of 10"),
            "{}",
            available.message
        );

        // A single pod is all or nothing.
        let single = Progress {
            desired_pods: 1,
            desired_shards: 4,
            present_pods: 0,
            ready_pods: 0,
            ready_shards: 0,
            ready_shards_by_layout: Default::default(),
            ..settled()
        };
        let mut o = observed(single, &[]);
        o.shards_per_pod = 4;
        o.target_layout = Some("4".into());
        o.reshard = Some(report(Phase::Idle, &["4"]));
        let s = build(&o, None, t(0));
        assert_eq!(status_of(cond(&s, condition::AVAILABLE)).0, "False");
    }

    #[test]
    fn blocked_or_roles_unknown() {
        let problems = [Problem::WorkerImageUnknown("no image".into())];
        let s = build(&observed(Progress::default(), &problems), None, t(0));
        assert_eq!(
            status_of(cond(&s, condition::AVAILABLE)),
            ("False", "WorkerImageUnknown")
        );
        assert_eq!(
            status_of(cond(&s, condition::READY)),
            ("False", "WorkerImageUnknown")
        );
        // Redis unreadable: whichever layout has Ready pods counts.
        let mut o = observed(settled(), &[]);
        o.reshard = None;
        let s = build(&o, None, t(0));
        assert_eq!(status_of(cond(&s, condition::AVAILABLE)).0, "True");
        assert_eq!(cond(&s, condition::RESHARDING).reason, "RolesUnknown");
    }

    #[test]
    fn budget_reset_jitter_is_not_a_change() {
        let facts = |reset: i64, remaining| GatewayFacts {
            recommended_shards: 9,
            max_concurrency: 1,
            session_total: 1000,
            session_remaining: remaining,
            reset_at: t(reset),
        };
        let a = facts(86_000, 990);
        let first = build(
            &Observed {
                gateway: Some(&a),
                ..observed(settled(), &[])
            },
            None,
            t(0),
        );
        let b = facts(86_003, 990);
        let again = build(
            &Observed {
                gateway: Some(&b),
                ..observed(settled(), &[])
            },
            Some(&first),
            t(3),
        );
        assert_eq!(first, again);
        assert_eq!(again.recommended_shards, Some(9));
        assert_eq!(again.max_concurrency, Some(1));

        let c = facts(90_000, 980);
        let moved = build(
            &Observed {
                gateway: Some(&c),
                max_concurrency_override: Some(4),
                ..observed(settled(), &[])
            },
            Some(&first),
            t(3),
        );
        let limit = moved.session_start_limit.expect("limit");
        assert_eq!((limit.remaining, limit.reset_at), (980, Time(t(90_000))));
        assert_eq!(moved.max_concurrency, Some(4), "the override wins");
    }
}
