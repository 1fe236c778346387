//! Resharding without a client: from the spec's shard total, the roles document in Redis
//! (`P:active-layout`), each layout's pods and its shards' acknowledgements, the next step of
//! the hand-over protocol of `docs/resharding.md`.
//!
//! The document is the reshard's only state: each pass reads it and the world, decides, and
//! (at most) writes the next document by compare-and-set on its revision. Any operator replica,
//! after any restart, continues where the last one stopped. The `W` waits run from
//! `ackedAtMs`, Redis time, so they hold whichever replica measures them.
//!
//! BlueGreen from layout `F` to `B` (one role change per step, each acknowledged by every shard
//! of the layouts concerned before the next):
//!
//! | step | roles | moves on when |
//! |---|---|---|
//! | start | `F: active, B: standby` | budget checked; every `B` shard Ready; all acked; `W` passed |
//! | old claims | `F: claiming, B: standby` | `F` acked (its back-fill is written) |
//! | both claim | `F: claiming, B: claiming` | `B` acked, then `W` |
//! | old retires | `F: retired, B: claiming` | `F` acked, then `W` |
//! | done | `F: retired, B: active` | `F`'s pods are deleted once acked |
//!
//! Recreate: `F: retired, B: active` at once; `F`'s pods deleted once acked; `B`'s created
//! once `F`'s are gone.
//!
//! A change of the target during a hand-over: before `B` claims anything, `B` is abandoned
//! (`F: active, B: retired`, its pods deleted) and the new target starts afresh from `F`. Once
//! `B` claims, the hand-over to `B` completes first (both layouts may have acted by then; going
//! forward is as short as going back), then `B` → the new target is a reshard of its own.

use std::collections::BTreeMap;

use shardset_contract::{LayoutRoles, Role, ShardState, ShardStatus, layout_name};

use crate::crd::ReshardStrategy;
use crate::plan::ObservedPod;

/// What the plan knows of one layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutView {
    /// The layout's shard total (its name is `layout_name(total)`).
    pub total: u32,
    /// Owned pods of the layout that are not terminating.
    pub pods: u32,
    /// Owned pods of the layout being deleted.
    pub terminating: u32,
    /// Shards whose pod is Ready and whose worker reports them READY.
    pub ready_shards: u32,
    /// The lowest roles revision acknowledged by the shards of the layout's running pods;
    /// `None` while one of them has not reported. (Pods not started yet need no
    /// acknowledgement: a worker reads the roles before it acts.)
    pub acked: Option<u64>,
    /// A shard that has not acknowledged, for messages (`"shard 3 on bot-16-0-7"`).
    pub unacked: Option<String>,
}

impl LayoutView {
    fn name(&self) -> String {
        layout_name(self.total)
    }

    /// Every shard is READY in a Ready pod.
    pub fn complete(&self) -> bool {
        self.total > 0 && self.ready_shards >= self.total
    }

    /// The layout acknowledged `revision` (a layout without running pods has nothing to say).
    pub fn acked(&self, revision: u64) -> bool {
        self.pods == 0 || self.acked.is_some_and(|a| a >= revision)
    }
}

/// Everything one decision needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The shard total the spec asks for.
    pub target: u32,
    pub strategy: ReshardStrategy,
    /// `P:active-layout` as read (None: unset).
    pub doc: Option<&'a LayoutRoles>,
    /// Every layout with owned pods, and the target's (possibly without pods).
    pub layouts: &'a [LayoutView],
    /// Session starts remaining (the lower of Discord's fresh answer and `P:budget`).
    pub remaining: Option<u32>,
    /// `spec.identifyReserve`.
    pub reserve: u32,
    /// Redis time, ms.
    pub now_ms: u64,
    /// `W`, ms.
    pub window_ms: u64,
}

/// Where a reshard stands; the `Resharding` condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One layout serves; nothing to do.
    Idle,
    /// The budget cannot pay for the new layout: nothing started.
    InsufficientSessionStarts,
    /// The budget is not known yet (Discord not read): nothing started.
    SessionStartsUnknown,
    /// BlueGreen: the new layout's pods start in standby.
    StartingNewLayout,
    /// BlueGreen: the old layout claims events (after back-filling).
    OldLayoutClaiming,
    /// BlueGreen: both layouts claim.
    BothLayoutsClaiming,
    /// BlueGreen: the old layout is retired, the new one claims.
    RetiringOldLayout,
    /// The old layout's pods are being deleted.
    DeletingOldLayout,
    /// A hand-over to a layout the spec no longer wants is being undone.
    Abandoning,
    /// Recreate: the old layout is retired and deleted before the new one starts.
    StoppingOldLayout,
    /// The target layout's pods are being created (Recreate's second half, or a first start).
    StartingLayout,
}

impl Phase {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::InsufficientSessionStarts => "InsufficientSessionStarts",
            Self::SessionStartsUnknown => "SessionStartsUnknown",
            Self::StartingNewLayout => "StartingNewLayout",
            Self::OldLayoutClaiming => "OldLayoutClaiming",
            Self::BothLayoutsClaiming => "BothLayoutsClaiming",
            Self::RetiringOldLayout => "RetiringOldLayout",
            Self::DeletingOldLayout => "DeletingOldLayout",
            Self::Abandoning => "Abandoning",
            Self::StoppingOldLayout => "StoppingOldLayout",
            Self::StartingLayout => "StartingLayout",
        }
    }

    /// True while a reshard is under way (`Resharding=True`).
    pub fn in_progress(self) -> bool {
        !matches!(
            self,
            Self::Idle | Self::InsufficientSessionStarts | Self::SessionStartsUnknown
        )
    }

    /// True when the reshard was refused and nothing may start.
    pub fn refused(self) -> bool {
        matches!(
            self,
            Self::InsufficientSessionStarts | Self::SessionStartsUnknown
        )
    }
}

/// The decision of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The layout whose pods the pod plan keeps, creates and rolls: the spec's target, or the
    /// layout a hand-over under way brings in.
    pub layout: u32,
    /// Missing pods of `layout` may be created.
    pub create: bool,
    /// Layouts whose pods may be deleted now: retired, and every running shard acknowledged it.
    pub delete: Vec<String>,
    /// The next roles document, written by compare-and-set against the read one's revision.
    pub write: Option<LayoutRoles>,
    pub phase: Phase,
    /// What is happening or awaited, for a human.
    pub message: String,
    /// The hand-over under way (`from`, `to`), for the status.
    pub handover: Option<(String, String)>,
    /// This decision starts a reshard (its `write` passed the budget check): the caller checks
    /// the budget on a fresh answer from Discord before writing it.
    pub starts: bool,
}

/// The next step.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let views: BTreeMap<String, &LayoutView> = i.layouts.iter().map(|v| (v.name(), v)).collect();
    let target = layout_name(i.target);
    let revision = i.doc.map_or(0, |d| d.revision);
    let role = |layout: &str| LayoutRoles::role_of(i.doc, layout);
    let view = |layout: &str| views.get(layout).copied();
    let has_pods = |layout: &str| view(layout).is_some_and(|v| v.pods > 0);
    let acked = |layout: &str| view(layout).is_none_or(|v| v.acked(revision));

    // Retired layouts go once every running shard of theirs knows it (they end their sessions
    // with 1000 rather than hand them over).
    let deletable: Vec<String> = views
        .iter()
        .filter(|(name, v)| v.pods > 0 && role(name) == Role::Retired && acked(name))
        .map(|(name, _)| name.clone())
        .collect();

    if let Some((from, to)) = handover(i.doc) {
        // The two layouts of the hand-over keep their pods until it is done.
        let deletable = deletable
            .into_iter()
            .filter(|l| *l != from && *l != to)
            .collect();
        return continue_handover(i, &from, &to, &views, deletable);
    }

    // No hand-over under way. Layouts with pods that act on events:
    let acting: Vec<&String> = views
        .keys()
        .filter(|name| has_pods(name) && role(name).may_act())
        .collect();
    // Layouts with pods that should not be there (standby leftovers, unnamed): retire them.
    let strays: Vec<String> = views
        .keys()
        .filter(|name| **name != target && has_pods(name))
        .filter(|name| !role(name).may_act() && role(name) != Role::Retired)
        .cloned()
        .collect();

    let target_serves = match i.doc {
        // No roles ever written: every layout acts. The target alone serves only if it is alone.
        None => !views.iter().any(|(name, v)| *name != target && v.pods > 0),
        Some(_) => {
            role(&target) == Role::Active
                && (has_pods(&target) || !acting.iter().any(|l| **l != target))
        }
    };
    if target_serves {
        // Steady (or starting the target's pods). Retire leftovers, delete retired layouts.
        let others_acting: Vec<String> = acting
            .iter()
            .filter(|l| ***l != target)
            .map(|l| (*l).clone())
            .collect();
        if !others_acting.is_empty() || !strays.is_empty() {
            // Two active layouts (a document from before roles existed, or edited by hand):
            // keep the target, retire the others.
            let mut doc = next_doc(i.doc);
            doc.roles.insert(target.clone(), Role::Active);
            for l in others_acting.iter().chain(&strays) {
                doc.roles.insert(l.clone(), Role::Retired);
            }
            return Decision {
                layout: i.target,
                create: true,
                delete: deletable,
                write: Some(doc),
                phase: Phase::DeletingOldLayout,
                message: format!(
                    "retiring layouts {} beside layout {target}",
                    others_acting
                        .iter()
                        .chain(&strays)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                handover: None,
                starts: false,
            };
        }
        let old_left: Vec<&String> = views
            .iter()
            .filter(|(name, v)| **name != target && (v.pods > 0 || v.terminating > 0))
            .map(|(name, _)| name)
            .collect();
        let recreate_waits = i.strategy == ReshardStrategy::Recreate && !old_left.is_empty();
        let (phase, message) = if !old_left.is_empty() {
            let phase = if recreate_waits {
                Phase::StoppingOldLayout
            } else {
                Phase::DeletingOldLayout
            };
            (
                phase,
                format!(
                    "deleting the pods of retired layout {}",
                    old_left
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        } else if !view(&target).is_some_and(LayoutView::complete) && i.doc.is_some() {
            (Phase::StartingLayout, format!("starting layout {target}"))
        } else {
            (Phase::Idle, format!("layout {target} serves"))
        };
        return Decision {
            layout: i.target,
            create: !recreate_waits,
            delete: deletable,
            write: None,
            phase,
            message,
            handover: None,
            starts: false,
        };
    }

    // The target does not serve: a reshard from the acting layout (if any) to the target.
    let from = acting
        .iter()
        .filter(|l| ***l != target)
        .max_by_key(|l| view(l).map(|v| (v.complete(), v.total)))
        .map(|l| (*l).clone());
    let Some(from) = from else {
        // Nothing acts (a first start after roles were written, or Recreate's second half with
        // a document naming another layout): the target becomes the active layout.
        let mut doc = next_doc(i.doc);
        doc.roles.insert(target.clone(), Role::Active);
        for l in &strays {
            doc.roles.insert(l.clone(), Role::Retired);
        }
        return Decision {
            layout: i.target,
            create: false,
            delete: deletable,
            write: Some(doc),
            phase: Phase::StartingLayout,
            message: format!("making layout {target} the active one"),
            handover: None,
            starts: false,
        };
    };

    // Budget: the new layout identifies every shard once.
    let refused = match i.remaining {
        None => Some((
            Phase::SessionStartsUnknown,
            format!(
                "moving from {from} to {target} shards waits for Discord's session start budget (GET /gateway/bot), which is not known yet; nothing was started"
            ),
        )),
        Some(remaining) if remaining.saturating_sub(i.reserve) < i.target => Some((
            Phase::InsufficientSessionStarts,
            format!(
                "moving from {from} to {target} shards needs {target} session starts, but Discord reports {remaining} remaining and spec.identifyReserve keeps {}; no pod was started. Wait for the daily reset (status.sessionStartLimit.resetAt), lower spec.identifyReserve, or ask for fewer shards",
                i.reserve
            ),
        )),
        Some(_) => None,
    };
    if let Some((phase, message)) = refused {
        // The serving layout stays whole meanwhile (a pod of it that dies is replaced, a
        // template change rolls): nothing of the new layout starts.
        return Decision {
            layout: view(&from).map_or(i.target, |v| v.total),
            create: true,
            delete: deletable,
            write: None,
            phase,
            message,
            handover: None,
            starts: false,
        };
    }

    let mut doc = next_doc(i.doc);
    for l in &strays {
        doc.roles.insert(l.clone(), Role::Retired);
    }
    match i.strategy {
        ReshardStrategy::BlueGreen => {
            doc.roles.insert(from.clone(), Role::Active);
            doc.roles.insert(target.clone(), Role::Standby);
            doc.from = Some(from.clone());
            doc.to = Some(target.clone());
            doc.started_at_ms = Some(i.now_ms);
            Decision {
                layout: i.target,
                create: false,
                delete: deletable,
                write: Some(doc),
                phase: Phase::StartingNewLayout,
                message: format!(
                    "starting layout {target} in standby beside layout {from} (budget checked)"
                ),
                handover: Some((from, target)),
                starts: true,
            }
        }
        ReshardStrategy::Recreate => {
            doc.roles.insert(from.clone(), Role::Retired);
            doc.roles.insert(target.clone(), Role::Active);
            Decision {
                layout: i.target,
                create: false,
                delete: deletable,
                write: Some(doc),
                phase: Phase::StoppingOldLayout,
                message: format!(
                    "Recreate: retiring layout {from}; layout {target} starts once its pods are gone (budget checked)"
                ),
                handover: None,
                starts: true,
            }
        }
    }
}

/// The layouts as the plan sees them: owned pods by layout, and from the shards' status records
/// readiness and acknowledgements. `statuses` holds the records of shards `0..total` of each
/// layout read; `target` is included even without pods.
pub fn views(
    observed: &[ObservedPod],
    statuses: &BTreeMap<u32, Vec<Option<ShardStatus>>>,
    target: u32,
) -> Vec<LayoutView> {
    let mut by_layout: BTreeMap<u32, LayoutView> = BTreeMap::new();
    by_layout.insert(
        target,
        LayoutView {
            total: target,
            ..LayoutView::default()
        },
    );
    for pod in observed.iter().filter(|p| p.owned) {
        let (Some(total), Some(range)) = (
            pod.layout.as_deref().and_then(|l| l.parse::<u32>().ok()),
            pod.range,
        ) else {
            continue;
        };
        let view = by_layout.entry(total).or_insert_with(|| LayoutView {
            total,
            ..LayoutView::default()
        });
        if view.pods == 0 && view.terminating == 0 {
            // First pod seen: every shard acknowledged "everything" until a record says less.
            view.acked = Some(u64::MAX);
        }
        if pod.terminating {
            view.terminating += 1;
            continue;
        }
        view.pods += 1;
        let records = statuses.get(&total);
        for shard in range.first..=range.last.min(total.saturating_sub(1)) {
            let record = records
                .and_then(|r| r.get(shard as usize))
                .and_then(Option::as_ref);
            if pod.ready && record.is_some_and(|r| r.state == ShardState::Ready) {
                view.ready_shards += 1;
            }
            match record {
                Some(r) => {
                    if view.acked.is_some_and(|a| r.layout_revision < a) {
                        view.acked = Some(r.layout_revision);
                        view.unacked = Some(format!(
                            "shard {shard} on {} (at revision {})",
                            pod.name, r.layout_revision
                        ));
                    }
                }
                None => {
                    if view.acked.is_some() {
                        view.unacked = Some(format!("shard {shard} on {} (no status)", pod.name));
                    }
                    view.acked = None;
                }
            }
        }
    }
    for view in by_layout.values_mut() {
        if view.pods == 0 {
            view.acked = None;
            view.unacked = None;
        }
    }
    by_layout.into_values().collect()
}

/// The shard total `autoShards` asks for now: Discord's recommendation (`recommended_total`,
/// already turned into a total), unless the current total changed less than `interval_s` ago.
/// Returns the total and, when the recommendation is held back, when it may apply.
pub fn auto_target(
    recommended_total: u32,
    current: Option<u32>,
    current_since_s: Option<i64>,
    now_s: i64,
    interval_s: u32,
) -> (u32, Option<i64>) {
    match (current, current_since_s) {
        (Some(current), Some(since)) if current != recommended_total => {
            let allowed_at = since.saturating_add(i64::from(interval_s));
            if now_s < allowed_at {
                (current, Some(allowed_at))
            } else {
                (recommended_total, None)
            }
        }
        (Some(current), None) if current != recommended_total => {
            // No record of when it changed (a status from an older operator): wait one period.
            (current, Some(now_s.saturating_add(i64::from(interval_s))))
        }
        _ => (recommended_total, None),
    }
}

/// `(from, to)` of the hand-over the document describes, if any.
fn handover(doc: Option<&LayoutRoles>) -> Option<(String, String)> {
    let doc = doc?;
    Some((doc.from.clone()?, doc.to.clone()?))
}

/// The document after `doc`: the next revision, roles of layouts that still matter kept.
fn next_doc(doc: Option<&LayoutRoles>) -> LayoutRoles {
    LayoutRoles {
        revision: doc.map_or(0, |d| d.revision) + 1,
        roles: doc.map(|d| d.roles.clone()).unwrap_or_default(),
        ..LayoutRoles::default()
    }
}

fn continue_handover(
    i: &Inputs<'_>,
    from: &str,
    to: &str,
    views: &BTreeMap<String, &LayoutView>,
    deletable: Vec<String>,
) -> Decision {
    let doc = i.doc.cloned().unwrap_or_default();
    let revision = doc.revision;
    let target = layout_name(i.target);
    let view = |layout: &str| views.get(layout).copied();
    let acked = |layout: &str| view(layout).is_none_or(|v| v.acked(revision));
    let to_total: u32 = to.parse().unwrap_or(i.target);
    let unacked = |layout: &str| {
        view(layout)
            .and_then(|v| v.unacked.clone())
            .map(|u| format!(" (waiting for {u})"))
            .unwrap_or_default()
    };
    let role_from = LayoutRoles::role_of(Some(&doc), from);
    let role_to = LayoutRoles::role_of(Some(&doc), to);
    let handover = Some((from.to_owned(), to.to_owned()));
    let wait = |phase: Phase, message: String| Decision {
        layout: to_total,
        create: true,
        delete: deletable.clone(),
        write: None,
        phase,
        message,
        handover: handover.clone(),
        starts: false,
    };
    // Marks the acknowledgements (same revision: the workers see no change) or, once `W` has
    // passed since, writes `next`.
    let after_window = |phase: Phase, next: LayoutRoles, what: &str| match doc.acked_at_ms {
        None => {
            let mut marked = doc.clone();
            marked.acked_at_ms = Some(i.now_ms);
            Decision {
                write: Some(marked),
                ..wait(
                    phase,
                    format!("{what}: acknowledged; waiting W ({} ms)", i.window_ms),
                )
            }
        }
        Some(at) if i.now_ms >= at.saturating_add(i.window_ms) => Decision {
            write: Some(next),
            ..wait(phase, format!("{what}: acknowledged, W passed"))
        },
        // No countdown in the message: it goes into the status, which must not change per pass.
        Some(_) => wait(
            phase,
            format!("{what}: acknowledged; waiting W ({} ms)", i.window_ms),
        ),
    };
    let step = |roles: [(&str, Role); 2], keep_handover: bool| {
        let mut next = next_doc(Some(&doc));
        for (l, r) in roles {
            next.roles.insert(l.to_owned(), r);
        }
        if keep_handover {
            next.from = doc.from.clone();
            next.to = doc.to.clone();
            next.started_at_ms = doc.started_at_ms;
        }
        next
    };

    match (role_from, role_to) {
        (Role::Active | Role::Claiming, Role::Standby) if target != to => {
            // Nothing of `to` has acted yet: undo, and start afresh from `from` next pass.
            let next = step([(from, Role::Active), (to, Role::Retired)], false);
            Decision {
                write: Some(next),
                ..wait(
                    Phase::Abandoning,
                    format!("the spec now asks for {target} shards: abandoning layout {to}"),
                )
            }
        }
        (Role::Active, Role::Standby) => {
            let Some(v) = view(to).filter(|v| v.complete()) else {
                let (ready, total) = view(to).map_or((0, to_total), |v| (v.ready_shards, v.total));
                return wait(
                    Phase::StartingNewLayout,
                    format!("layout {to} in standby: {ready} of {total} shards ready"),
                );
            };
            let _ = v;
            if !acked(to) || !acked(from) {
                return wait(
                    Phase::StartingNewLayout,
                    format!(
                        "layout {to} ready; waiting for every shard to acknowledge revision {revision}{}{}",
                        unacked(from),
                        unacked(to)
                    ),
                );
            }
            after_window(
                Phase::StartingNewLayout,
                step([(from, Role::Claiming), (to, Role::Standby)], true),
                &format!("layout {to} ready in standby"),
            )
        }
        (Role::Claiming, Role::Standby) => {
            if !acked(from) {
                return wait(
                    Phase::OldLayoutClaiming,
                    format!("layout {from} switching to claims{}", unacked(from)),
                );
            }
            Decision {
                write: Some(step([(from, Role::Claiming), (to, Role::Claiming)], true)),
                ..wait(
                    Phase::OldLayoutClaiming,
                    format!("layout {from} claims every event; layout {to} starts claiming"),
                )
            }
        }
        (Role::Claiming, Role::Claiming) => {
            if !acked(to) {
                return wait(
                    Phase::BothLayoutsClaiming,
                    format!("layout {to} switching to claims{}", unacked(to)),
                );
            }
            after_window(
                Phase::BothLayoutsClaiming,
                step([(from, Role::Retired), (to, Role::Claiming)], true),
                "both layouts claim",
            )
        }
        (Role::Retired, Role::Claiming) => {
            if !acked(from) {
                return wait(
                    Phase::RetiringOldLayout,
                    format!("layout {from} retiring{}", unacked(from)),
                );
            }
            after_window(
                Phase::RetiringOldLayout,
                step([(from, Role::Retired), (to, Role::Active)], false),
                &format!("layout {from} retired"),
            )
        }
        (rf, rt) => {
            // Not a state this module writes (edited by hand?): make `to` the one layout.
            let next = step([(from, Role::Retired), (to, Role::Active)], false);
            Decision {
                write: Some(next),
                ..wait(
                    Phase::RetiringOldLayout,
                    format!(
                        "unexpected roles {from}: {}, {to}: {}; retiring {from}",
                        rf.label(),
                        rt.label()
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 10_000;

    fn view(total: u32, pods: u32, ready: u32, acked: Option<u64>) -> LayoutView {
        LayoutView {
            total,
            pods,
            terminating: 0,
            ready_shards: ready,
            acked,
            unacked: None,
        }
    }

    fn doc(revision: u64, roles: &[(u32, Role)]) -> LayoutRoles {
        LayoutRoles {
            revision,
            roles: roles.iter().map(|(l, r)| (l.to_string(), *r)).collect(),
            ..LayoutRoles::default()
        }
    }

    fn handing(revision: u64, roles: &[(u32, Role)], from: u32, to: u32) -> LayoutRoles {
        LayoutRoles {
            from: Some(from.to_string()),
            to: Some(to.to_string()),
            started_at_ms: Some(1),
            ..doc(revision, roles)
        }
    }

    fn inputs<'a>(
        target: u32,
        doc: Option<&'a LayoutRoles>,
        layouts: &'a [LayoutView],
    ) -> Inputs<'a> {
        Inputs {
            target,
            strategy: ReshardStrategy::BlueGreen,
            doc,
            layouts,
            remaining: Some(1000),
            reserve: 0,
            now_ms: 100_000,
            window_ms: W,
        }
    }

    fn roles_of(doc: &LayoutRoles) -> Vec<(String, Role)> {
        doc.roles.iter().map(|(l, r)| (l.clone(), *r)).collect()
    }

    /// The roles in the document's (string) order.
    fn r(pairs: &[(u32, Role)]) -> Vec<(String, Role)> {
        let mut v: Vec<(String, Role)> = pairs.iter().map(|(l, r)| (l.to_string(), *r)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn one_layout_without_a_document_is_idle() {
        let layouts = [view(16, 2, 16, Some(0))];
        let d = decide(&inputs(16, None, &layouts));
        assert_eq!(d.phase, Phase::Idle);
        assert!(d.create && d.write.is_none() && d.delete.is_empty());
        assert_eq!(d.layout, 16);
    }

    #[test]
    fn a_first_start_creates_pods_and_writes_nothing() {
        let layouts = [view(16, 0, 0, None)];
        let d = decide(&inputs(16, None, &layouts));
        assert!(d.create && d.write.is_none());
    }

    #[test]
    fn blue_green_walks_every_step_in_order() {
        // 16 → 32. Start: the budget is checked, the roles written, nothing created yet.
        let mut layouts = vec![view(16, 2, 16, Some(0)), view(32, 0, 0, None)];
        let d = decide(&inputs(32, None, &layouts));
        assert_eq!(d.phase, Phase::StartingNewLayout);
        assert!(!d.create, "pods only after the roles are written");
        let start = d.write.expect("roles");
        assert_eq!(start.revision, 1);
        assert_eq!(
            roles_of(&start),
            r(&[(16, Role::Active), (32, Role::Standby)])
        );
        assert_eq!(
            (start.from.as_deref(), start.to.as_deref()),
            (Some("16"), Some("32"))
        );

        // Standby: create the new pods; wait until they are ready and everyone acked.
        let d = decide(&inputs(32, Some(&start), &layouts));
        assert!(d.create && d.write.is_none());
        assert_eq!(d.layout, 32);
        layouts[1] = view(32, 4, 32, Some(1));
        layouts[0].acked = Some(0);
        let d = decide(&inputs(32, Some(&start), &layouts));
        assert!(d.write.is_none(), "the old layout has not acked revision 1");
        layouts[0].acked = Some(1);
        // Acked: the time is marked (same revision), then W must pass.
        let d = decide(&inputs(32, Some(&start), &layouts));
        let marked = d.write.expect("acked_at");
        assert_eq!((marked.revision, marked.acked_at_ms), (1, Some(100_000)));
        let mut i = inputs(32, Some(&marked), &layouts);
        i.now_ms = 100_000 + W - 1;
        assert!(decide(&i).write.is_none(), "W has not passed");
        i.now_ms = 100_000 + W;
        let claiming_old = decide(&i).write.expect("next");
        assert_eq!(claiming_old.revision, 2);
        assert_eq!(claiming_old.acked_at_ms, None);
        assert_eq!(
            roles_of(&claiming_old),
            r(&[(16, Role::Claiming), (32, Role::Standby)])
        );

        // The old layout claims once it acked (its back-fill is written by then).
        let d = decide(&inputs(32, Some(&claiming_old), &layouts));
        assert_eq!(d.phase, Phase::OldLayoutClaiming);
        assert!(d.write.is_none());
        layouts[0].acked = Some(2);
        let both = decide(&inputs(32, Some(&claiming_old), &layouts))
            .write
            .expect("both claim");
        assert_eq!(
            roles_of(&both),
            r(&[(16, Role::Claiming), (32, Role::Claiming)])
        );

        // Both claim: the new layout's acks, then W.
        layouts[1].acked = Some(3);
        let marked = decide(&inputs(32, Some(&both), &layouts))
            .write
            .expect("mark");
        let mut i = inputs(32, Some(&marked), &layouts);
        i.now_ms += W;
        let retiring = decide(&i).write.expect("retire the old layout");
        assert_eq!(
            roles_of(&retiring),
            r(&[(16, Role::Retired), (32, Role::Claiming)])
        );

        // Retired: its acks, then W, then the new layout is the active one.
        layouts[0].acked = Some(4);
        let marked = decide(&inputs(32, Some(&retiring), &layouts))
            .write
            .expect("mark");
        let mut i = inputs(32, Some(&marked), &layouts);
        i.now_ms += W;
        let d = decide(&i);
        assert!(
            d.delete.is_empty(),
            "old pods stay until the new layout is active"
        );
        let done = d.write.expect("active");
        assert_eq!(
            roles_of(&done),
            r(&[(16, Role::Retired), (32, Role::Active)])
        );
        assert_eq!((done.from.clone(), done.to.clone()), (None, None));

        // Done: the retired layout's pods go once it acked the last revision.
        let d = decide(&inputs(32, Some(&done), &layouts));
        assert!(d.delete.is_empty(), "layout 16 has not acked revision 5");
        assert_eq!(d.phase, Phase::DeletingOldLayout);
        layouts[0].acked = Some(5);
        let d = decide(&inputs(32, Some(&done), &layouts));
        assert_eq!(d.delete, ["16"]);
        assert!(d.write.is_none() && d.create);

        // Gone: idle.
        let layouts = [view(32, 4, 32, Some(5))];
        let d = decide(&inputs(32, Some(&done), &layouts));
        assert_eq!(d.phase, Phase::Idle);
        assert!(!d.phase.in_progress());
    }

    #[test]
    fn the_budget_refuses_and_nothing_starts() {
        let layouts = [view(16, 2, 16, Some(0))];
        let mut i = inputs(32, None, &layouts);
        i.remaining = Some(40);
        i.reserve = 10;
        let d = decide(&i);
        assert_eq!(d.phase, Phase::InsufficientSessionStarts);
        assert!(d.write.is_none() && d.delete.is_empty());
        // The pods follow the serving layout (kept whole); nothing of layout 32 starts.
        assert_eq!((d.layout, d.create), (16, true));
        assert!(
            d.message.contains("needs 32 session starts"),
            "{}",
            d.message
        );
        assert!(d.message.contains("40 remaining"), "{}", d.message);
        i.reserve = 8;
        assert_eq!(
            decide(&i).phase,
            Phase::StartingNewLayout,
            "40 - 8 pays for 32"
        );
        i.remaining = None;
        assert_eq!(decide(&i).phase, Phase::SessionStartsUnknown);
        assert!(decide(&i).phase.refused());
    }

    #[test]
    fn the_new_layout_must_be_ready_before_anyone_claims() {
        let start = handing(1, &[(16, Role::Active), (32, Role::Standby)], 16, 32);
        let layouts = [view(16, 2, 16, Some(1)), view(32, 4, 31, Some(1))];
        let d = decide(&inputs(32, Some(&start), &layouts));
        assert!(d.write.is_none());
        assert!(d.message.contains("31 of 32"), "{}", d.message);
    }

    #[test]
    fn scaling_elsewhere_before_the_new_layout_claims_abandons_it() {
        for roles in [
            [(16, Role::Active), (32, Role::Standby)],
            [(16, Role::Claiming), (32, Role::Standby)],
        ] {
            let during = handing(3, &roles, 16, 32);
            let layouts = [view(16, 2, 16, Some(3)), view(32, 4, 32, Some(3))];
            let d = decide(&inputs(48, Some(&during), &layouts));
            assert_eq!(d.phase, Phase::Abandoning);
            let undone = d.write.expect("undo");
            assert_eq!(
                roles_of(&undone),
                r(&[(16, Role::Active), (32, Role::Retired)])
            );
            assert_eq!(undone.to, None);
            // Next pass: layout 32 goes once acked, and 16 → 48 starts over (budget checked).
            let layouts = [
                view(16, 2, 16, Some(4)),
                view(32, 4, 32, Some(4)),
                view(48, 0, 0, None),
            ];
            let d = decide(&inputs(48, Some(&undone), &layouts));
            assert_eq!(d.delete, ["32"]);
            let restart = d.write.expect("start 16 → 48");
            assert_eq!(
                roles_of(&restart),
                r(&[(16, Role::Active), (32, Role::Retired), (48, Role::Standby)])
            );
        }
    }

    #[test]
    fn scaling_back_before_the_new_layout_claims_keeps_the_old_one() {
        let during = handing(1, &[(16, Role::Active), (32, Role::Standby)], 16, 32);
        let layouts = [view(16, 2, 16, Some(1)), view(32, 4, 10, Some(1))];
        let undone = decide(&inputs(16, Some(&during), &layouts))
            .write
            .expect("undo");
        let layouts = [view(16, 2, 16, Some(2)), view(32, 4, 10, Some(2))];
        let d = decide(&inputs(16, Some(&undone), &layouts));
        assert_eq!(d.delete, ["32"]);
        assert!(d.write.is_none(), "16 serves: no new reshard");
        assert_eq!(d.layout, 16);
    }

    #[test]
    fn once_the_new_layout_claims_the_hand_over_completes_first() {
        let both = handing(3, &[(16, Role::Claiming), (32, Role::Claiming)], 16, 32);
        let layouts = [view(16, 2, 16, Some(3)), view(32, 4, 32, Some(3))];
        let d = decide(&inputs(48, Some(&both), &layouts));
        assert_eq!(d.layout, 32, "layout 32 is kept");
        assert_eq!(d.phase, Phase::BothLayoutsClaiming);
        let marked = d.write.expect("mark");
        assert_eq!(marked.revision, 3);
        // After the hand-over to 32, a reshard 32 → 48 of its own starts.
        let done = doc(5, &[(16, Role::Retired), (32, Role::Active)]);
        let layouts = [view(32, 4, 32, Some(5)), view(48, 0, 0, None)];
        let next = decide(&inputs(48, Some(&done), &layouts))
            .write
            .expect("32 → 48");
        assert_eq!(
            roles_of(&next),
            r(&[(16, Role::Retired), (32, Role::Active), (48, Role::Standby)])
        );
    }

    #[test]
    fn recreate_retires_then_deletes_then_creates() {
        let mut layouts = vec![view(16, 2, 16, Some(0)), view(32, 0, 0, None)];
        let mut i = inputs(32, None, &layouts);
        i.strategy = ReshardStrategy::Recreate;
        let d = decide(&i);
        assert_eq!(d.phase, Phase::StoppingOldLayout);
        assert!(!d.create);
        let doc1 = d.write.expect("roles");
        assert_eq!(
            roles_of(&doc1),
            r(&[(16, Role::Retired), (32, Role::Active)])
        );

        let mut i = inputs(32, Some(&doc1), &layouts);
        i.strategy = ReshardStrategy::Recreate;
        let d = decide(&i);
        assert!(d.delete.is_empty() && !d.create, "not acked yet");
        layouts[0].acked = Some(1);
        let mut i = inputs(32, Some(&doc1), &layouts);
        i.strategy = ReshardStrategy::Recreate;
        let d = decide(&i);
        assert_eq!(d.delete, ["16"]);
        assert!(
            !d.create,
            "the new layout waits for the old pods to be gone"
        );

        layouts[0] = LayoutView {
            pods: 0,
            terminating: 2,
            ..layouts[0].clone()
        };
        let mut i = inputs(32, Some(&doc1), &layouts);
        i.strategy = ReshardStrategy::Recreate;
        assert!(!decide(&i).create, "still terminating");

        let layouts = [view(32, 0, 0, None)];
        let mut i = inputs(32, Some(&doc1), &layouts);
        i.strategy = ReshardStrategy::Recreate;
        let d = decide(&i);
        assert!(d.create && d.write.is_none());
        assert_eq!(d.phase, Phase::StartingLayout);
    }

    #[test]
    fn recreate_checks_the_budget_too() {
        let layouts = [view(16, 2, 16, Some(0))];
        let mut i = inputs(32, None, &layouts);
        i.strategy = ReshardStrategy::Recreate;
        i.remaining = Some(31);
        let d = decide(&i);
        assert_eq!(d.phase, Phase::InsufficientSessionStarts);
        assert!(d.write.is_none(), "the old layout keeps running");
    }

    #[test]
    fn leftover_layouts_are_retired_before_deletion() {
        // A standby layout nobody hands over to (an operator crash between writes and edits).
        let stale = doc(4, &[(16, Role::Active), (32, Role::Standby)]);
        let layouts = [view(16, 2, 16, Some(4)), view(32, 4, 32, Some(4))];
        let d = decide(&inputs(16, Some(&stale), &layouts));
        let fixed = d.write.expect("retire 32");
        assert_eq!(
            roles_of(&fixed),
            r(&[(16, Role::Active), (32, Role::Retired)])
        );
        assert!(d.delete.is_empty());

        // Two active layouts (roles written by hand): the target stays, the other retires.
        let both = doc(1, &[(16, Role::Active), (32, Role::Active)]);
        let d = decide(&inputs(32, Some(&both), &layouts));
        let fixed = d.write.expect("retire 16");
        assert_eq!(
            roles_of(&fixed),
            r(&[(16, Role::Retired), (32, Role::Active)])
        );
    }

    #[test]
    fn no_document_and_two_layouts_starts_a_hand_over_from_the_complete_one() {
        // Pods of an older total from before roles existed: every layout acts (no document);
        // the hand-over starts from the complete one.
        let layouts = [view(8, 1, 8, Some(0)), view(16, 1, 4, Some(0))];
        let d = decide(&inputs(16, None, &layouts));
        let start = d.write.expect("roles");
        assert_eq!(
            roles_of(&start),
            r(&[(8, Role::Active), (16, Role::Standby)])
        );
    }

    #[test]
    fn a_document_naming_another_layout_makes_the_target_active_before_its_pods_start() {
        // E.g. every pod was deleted by hand after a reshard to 32, and the spec says 16.
        let done = doc(5, &[(16, Role::Retired), (32, Role::Active)]);
        let layouts = [view(16, 0, 0, None)];
        let d = decide(&inputs(16, Some(&done), &layouts));
        assert!(!d.create);
        let fixed = d.write.expect("16 active");
        assert_eq!(
            LayoutRoles::role_of(Some(&fixed), "16"),
            Role::Active,
            "{fixed:?}"
        );
        let d = decide(&inputs(16, Some(&fixed), &layouts));
        assert!(d.create);
    }

    #[test]
    fn acknowledgements_of_layouts_without_running_pods_are_not_awaited() {
        let v = view(16, 0, 0, None);
        assert!(v.acked(7));
        let v = view(16, 2, 16, None);
        assert!(!v.acked(0), "a running shard that never reported");
    }

    fn pod(name: &str, layout: u32, first: u32, last: u32, ready: bool) -> ObservedPod {
        ObservedPod {
            name: name.into(),
            owned: true,
            layout: Some(layout.to_string()),
            range: Some(crate::plan::ShardRange { first, last }),
            hash: Some("h".into()),
            ready,
            terminating: false,
        }
    }

    fn status(state: ShardState, revision: u64) -> Option<ShardStatus> {
        Some(ShardStatus {
            state,
            guilds: 1,
            pod: "p".into(),
            reason: None,
            updated_at_ms: 1,
            layout_revision: revision,
        })
    }

    #[test]
    fn views_count_ready_shards_and_the_lowest_acknowledgement() {
        let observed = [
            pod("bot-4-0-1", 4, 0, 1, true),
            pod("bot-4-2-3", 4, 2, 3, false),
            ObservedPod {
                terminating: true,
                ..pod("bot-2-0-1", 2, 0, 1, true)
            },
        ];
        let statuses = BTreeMap::from([(
            4,
            vec![
                status(ShardState::Ready, 3),
                status(ShardState::Ready, 2),
                status(ShardState::Ready, 3),
                None,
            ],
        )]);
        let v = views(&observed, &statuses, 8);
        let by: BTreeMap<u32, &LayoutView> = v.iter().map(|v| (v.total, v)).collect();
        assert_eq!(by[&4].pods, 2);
        assert_eq!(by[&4].ready_shards, 2, "only shards of the Ready pod");
        assert_eq!(by[&4].acked, None, "shard 3 never reported");
        assert_eq!(
            by[&4].unacked.as_deref(),
            Some("shard 3 on bot-4-2-3 (no status)")
        );
        assert_eq!((by[&2].pods, by[&2].terminating), (0, 1));
        assert!(by[&2].acked(99), "no running pods: nothing to wait for");
        assert_eq!(by[&8].pods, 0, "the target is always listed");

        let statuses = BTreeMap::from([(
            4,
            vec![
                status(ShardState::Ready, 3),
                status(ShardState::Ready, 2),
                status(ShardState::Ready, 3),
                status(ShardState::Resuming, 3),
            ],
        )]);
        let v = views(&observed, &statuses, 8);
        let four = v.iter().find(|v| v.total == 4).expect("layout 4");
        assert_eq!(four.acked, Some(2));
        assert!(four.acked(2) && !four.acked(3));
        assert_eq!(
            four.unacked.as_deref(),
            Some("shard 1 on bot-4-0-1 (at revision 2)")
        );
    }

    #[test]
    fn auto_shards_follow_discord_at_most_once_per_interval() {
        let day = 86_400;
        // Same total: nothing to hold back.
        assert_eq!(auto_target(16, Some(16), Some(0), 10, day), (16, None));
        // First start: Discord's number at once.
        assert_eq!(auto_target(16, None, None, 10, day), (16, None));
        // Changed 1 h ago: held until a day has passed since.
        assert_eq!(
            auto_target(32, Some(16), Some(1_000), 1_000 + 3_600, day),
            (16, Some(1_000 + day as i64))
        );
        // A day later: the new total.
        assert_eq!(
            auto_target(32, Some(16), Some(1_000), 1_000 + day as i64, day),
            (32, None)
        );
    }
}
