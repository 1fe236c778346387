//! Planning, without a client: which shard ranges the spec asks for, and which of the observed
//! pods to create, delete or replace to get there.
//!
//! The rules, in order:
//! - Pods not owned by the ShardSet are never touched (a foreign pod with our labels stays).
//! - Owned pods without readable layout/range labels are garbage: deleted at once.
//! - Pods of another layout (an older shard total) are deleted only when [`Gates::delete_layouts`]
//!   names their layout: the hand-over between layouts ([`crate::reshard`]) decides when.
//! - Missing pods of the target layout are created when [`Gates::create`] allows it, unless a pod
//!   of the same layout that is outside the plan (an older packing) still holds one of its shards.
//! - Pods of the target layout outside the plan, and pods whose spec drifted, are replaced
//!   **one at a time**: only when nothing in the target layout is terminating or missing, and
//!   every desired pod is Ready (or the candidate itself is not Ready, so nothing is lost).
//!
//! Nothing here decides whether pods may be created at all (a missing token Secret blocks that):
//! callers pass `blocked` and get a plan with no actions.

use std::collections::{BTreeMap, BTreeSet};

/// A contiguous, inclusive range of shard ids run by one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardRange {
    pub first: u32,
    pub last: u32,
}

impl ShardRange {
    /// Number of shards in the range.
    pub fn len(&self) -> u32 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one shard. (Clippy wants it beside `len`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when the two ranges share a shard.
    pub fn overlaps(&self, other: &ShardRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl std::fmt::Display for ShardRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Contiguous ranges of `per_pod` shards covering `0..total`; the last may be shorter.
pub fn ranges(total: u32, per_pod: u32) -> Vec<ShardRange> {
    let per_pod = per_pod.max(1);
    (0..total)
        .step_by(per_pod as usize)
        .map(|first| ShardRange {
            first,
            last: (first + per_pod - 1).min(total - 1),
        })
        .collect()
}

/// The deterministic name of the pod running `range` of layout `layout` of ShardSet `shardset`.
pub fn pod_name(shardset: &str, layout: &str, range: ShardRange) -> String {
    format!("{shardset}-{layout}-{}-{}", range.first, range.last)
}

/// A pod the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPod {
    pub name: String,
    pub range: ShardRange,
    /// Hash of the pod the operator would build (the `spec-hash` label).
    pub hash: String,
}

/// What planning needs to know of an existing pod (read from its labels and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    pub name: String,
    /// Controlled by this ShardSet (owner reference with its uid).
    pub owned: bool,
    pub layout: Option<String>,
    pub range: Option<ShardRange>,
    pub hash: Option<String>,
    pub ready: bool,
    /// No container of it ever ran (image never pulled, never scheduled, config error): it never
    /// connected to Discord, holds no session and acts on no event, so nothing waits for it
    /// (issue 11, item 13).
    pub never_ran: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Owned, but its labels do not say which shards it runs.
    Unlabelled,
    /// Belongs to a layout that is being replaced.
    OldLayout,
    /// Same layout, but a range the plan no longer has (`shardsPerPod` changed, or a stray pod).
    OutsidePlan,
    /// Its spec hash differs from the pod the operator would build now.
    Drifted,
}

impl DeleteReason {
    /// A short phrase for Events and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unlabelled => "its shard labels are missing",
            Self::OldLayout => "its layout was replaced",
            Self::OutsidePlan => "its shard range is no longer planned",
            Self::Drifted => "its spec changed",
        }
    }
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub reason: DeleteReason,
}

/// Counts that describe where the ShardSet stands (inputs of the status summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Pods of the target layout the plan wants.
    pub desired_pods: u32,
    /// Shards of the target layout.
    pub desired_shards: u32,
    /// Desired pods that exist and are not terminating.
    pub present_pods: u32,
    /// Desired pods that are Ready.
    pub ready_pods: u32,
    /// Shards covered by Ready desired pods.
    pub ready_shards: u32,
    /// Owned pods that are not terminating, all layouts.
    pub owned_pods: u32,
    /// Owned Ready pods that are not terminating, all layouts.
    pub owned_ready_pods: u32,
    /// Owned pods of other layouts (not terminating).
    pub old_layout_pods: u32,
    /// Owned pods of the target layout outside the plan (not terminating).
    pub outside_plan_pods: u32,
    /// Desired pods whose spec drifted.
    pub drifted_pods: u32,
    /// Owned pods being deleted.
    pub terminating_pods: u32,
    /// Layouts of other layouts' pods that cover every shard and are all Ready.
    pub complete_old_layouts: Vec<String>,
    /// Per layout (the target's included, with pods outside the plan): the shards covered by
    /// Ready pods that are not terminating. What each layout could act on right now.
    pub ready_shards_by_layout: BTreeMap<String, u32>,
}

impl Progress {
    /// Every desired pod runs the current spec and is Ready, and nothing else is left.
    pub fn settled(&self) -> bool {
        self.target_complete()
            && self.old_layout_pods == 0
            && self.outside_plan_pods == 0
            && self.drifted_pods == 0
            && self.terminating_pods == 0
    }

    /// Every desired pod exists and is Ready (it may still drift or share the stage).
    pub fn target_complete(&self) -> bool {
        self.ready_pods == self.desired_pods && self.present_pods == self.desired_pods
    }
}

/// What to do this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Names of desired pods to create.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Deletion>,
    pub progress: Progress,
}

impl Plan {
    /// True when this pass changes nothing.
    pub fn is_noop(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// What the reshard decision allows this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gates<'a> {
    /// Missing pods of the target layout may be created.
    pub create: bool,
    /// Layouts (other than the target) whose pods may be deleted.
    pub delete_layouts: &'a [String],
}

impl Gates<'_> {
    /// Create freely, delete no other layout (one layout, no reshard).
    pub const OPEN: Gates<'static> = Gates {
        create: true,
        delete_layouts: &[],
    };
}

enum Class<'a> {
    Desired(&'a DesiredPod),
    Unlabelled,
    OldLayout,
    OutsidePlan(ShardRange),
}

/// Plans one pass. `desired` are the target layout's pods (named by [`pod_name`]), `observed`
/// every pod carrying the ShardSet's label.
pub fn plan(
    target_layout: &str,
    desired: &[DesiredPod],
    observed: &[ObservedPod],
    gates: Gates<'_>,
    blocked: bool,
) -> Plan {
    let desired_by_name: BTreeMap<&str, &DesiredPod> =
        desired.iter().map(|d| (d.name.as_str(), d)).collect();
    let observed_names: BTreeSet<&str> = observed.iter().map(|o| o.name.as_str()).collect();

    let mut progress = Progress {
        desired_pods: desired.len() as u32,
        desired_shards: desired.iter().map(|d| d.range.len()).sum(),
        ..Progress::default()
    };

    let mut unlabelled = Vec::new();
    let mut old_layout = Vec::new();
    let mut old_layouts: BTreeMap<&str, Vec<&ObservedPod>> = BTreeMap::new();
    // Ranges of target-layout pods outside the plan, terminating or not: they hold shards.
    let mut outside_ranges = Vec::new();
    let mut outside_candidates = Vec::new();
    let mut drifted = Vec::new();
    let mut target_terminating = false;
    let mut ready_ranges: BTreeMap<&str, Vec<ShardRange>> = BTreeMap::new();

    for pod in observed.iter().filter(|o| o.owned) {
        let class = match (
            desired_by_name.get(pod.name.as_str()),
            &pod.layout,
            pod.range,
        ) {
            (Some(d), _, _) => Class::Desired(d),
            (None, Some(layout), Some(range)) if layout == target_layout => {
                Class::OutsidePlan(range)
            }
            (None, Some(_), Some(_)) => Class::OldLayout,
            _ => Class::Unlabelled,
        };
        if pod.terminating {
            progress.terminating_pods += 1;
            match class {
                Class::Desired(_) => target_terminating = true,
                Class::OutsidePlan(range) => {
                    target_terminating = true;
                    outside_ranges.push(range);
                }
                _ => {}
            }
            continue;
        }
        progress.owned_pods += 1;
        progress.owned_ready_pods += u32::from(pod.ready);
        if let (true, Some(layout), Some(range)) = (pod.ready, &pod.layout, pod.range) {
            ready_ranges.entry(layout).or_default().push(range);
        }
        match class {
            Class::Desired(d) => {
                progress.present_pods += 1;
                if pod.ready {
                    progress.ready_pods += 1;
                    progress.ready_shards += d.range.len();
                }
                if pod.hash.as_deref() != Some(d.hash.as_str()) {
                    progress.drifted_pods += 1;
                    drifted.push(pod);
                }
            }
            Class::Unlabelled => unlabelled.push(pod),
            Class::OldLayout => {
                progress.old_layout_pods += 1;
                old_layout.push(pod);
                if let Some(layout) = &pod.layout {
                    old_layouts.entry(layout).or_default().push(pod);
                }
            }
            Class::OutsidePlan(range) => {
                progress.outside_plan_pods += 1;
                outside_ranges.push(range);
                outside_candidates.push((range, pod));
            }
        }
    }
    progress.complete_old_layouts = old_layouts
        .iter()
        .filter(|(layout, pods)| layout_complete(layout, pods))
        .map(|(layout, _)| (*layout).to_owned())
        .collect();
    progress.ready_shards_by_layout = ready_ranges
        .into_iter()
        .filter_map(|(layout, ranges)| {
            let total = layout.parse::<u32>().ok()?;
            Some((layout.to_owned(), covered_shards(ranges, total)))
        })
        .collect();

    if blocked {
        return Plan {
            progress,
            ..Plan::default()
        };
    }

    let mut delete: Vec<Deletion> = unlabelled
        .iter()
        .map(|p| Deletion {
            name: p.name.clone(),
            reason: DeleteReason::Unlabelled,
        })
        .collect();

    // Old layouts: when the hand-over says so.
    delete.extend(
        old_layout
            .iter()
            .filter(|p| {
                p.layout
                    .as_ref()
                    .is_some_and(|l| gates.delete_layouts.contains(l))
            })
            .map(|p| Deletion {
                name: p.name.clone(),
                reason: DeleteReason::OldLayout,
            }),
    );

    // Creates: missing desired pods whose shards no other pod of the layout holds.
    let mut create = Vec::new();
    if gates.create {
        create = desired
            .iter()
            .filter(|d| !observed_names.contains(d.name.as_str()))
            .filter(|d| !outside_ranges.iter().any(|r| r.overlaps(&d.range)))
            .map(|d| d.name.clone())
            .collect();
    }

    // Pods that never ran hold no session and act on no event: replaced all at once, without
    // waiting for anything (a roll away from an image that cannot be pulled).
    let (never_ran, drifted): (Vec<&ObservedPod>, Vec<&ObservedPod>) =
        drifted.into_iter().partition(|p| p.never_ran);
    let (never_ran_outside, mut outside_candidates): (Vec<_>, Vec<_>) = outside_candidates
        .into_iter()
        .partition(|(_, p)| p.never_ran);
    delete.extend(
        never_ran_outside
            .iter()
            .map(|(_, p)| (*p, DeleteReason::OutsidePlan))
            .chain(never_ran.iter().map(|p| (*p, DeleteReason::Drifted)))
            .map(|(p, reason)| Deletion {
                name: p.name.clone(),
                reason,
            }),
    );

    // One rolling replacement at a time (stray packing first, then drift), only while nothing
    // else in the target layout moves: every missing pod is waiting for a shard an outside pod
    // holds, and nothing is terminating.
    if !target_terminating && create.is_empty() {
        let everyone_ready = progress.ready_pods == progress.present_pods;
        outside_candidates.sort_by_key(|(range, _)| *range);
        let candidate = outside_candidates
            .iter()
            .map(|(_, p)| (*p, DeleteReason::OutsidePlan))
            .chain(drifted.iter().map(|p| (*p, DeleteReason::Drifted)))
            .find(|(p, _)| everyone_ready || !p.ready);
        if let Some((pod, reason)) = candidate {
            delete.push(Deletion {
                name: pod.name.clone(),
                reason,
            });
        }
    }

    Plan {
        create,
        delete,
        progress,
    }
}

/// True when the pods of `layout` (its name is its shard total) cover every shard and are Ready.
fn layout_complete(layout: &str, pods: &[&ObservedPod]) -> bool {
    let Ok(total) = layout.parse::<u32>() else {
        return false;
    };
    let ready = pods.iter().filter(|p| p.ready).filter_map(|p| p.range);
    total > 0 && covered_shards(ready, total) == total
}

/// How many of the shards `0..total` the `ranges` cover (overlaps counted once).
pub fn covered_shards(ranges: impl IntoIterator<Item = ShardRange>, total: u32) -> u32 {
    let mut ranges: Vec<ShardRange> = ranges.into_iter().collect();
    ranges.sort();
    let mut covered = 0u32;
    let mut next = 0u32;
    for r in ranges {
        let first = r.first.max(next);
        let last = r.last.min(total.saturating_sub(1));
        if first <= last && first < total {
            covered += last - first + 1;
        }
        next = next.max(r.last.saturating_add(1));
    }
    covered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u32, last: u32) -> ShardRange {
        ShardRange { first, last }
    }

    fn desired(total: u32, per_pod: u32, hash: &str) -> Vec<DesiredPod> {
        ranges(total, per_pod)
            .into_iter()
            .map(|range| DesiredPod {
                name: pod_name("bot", &total.to_string(), range),
                range,
                hash: hash.into(),
            })
            .collect()
    }

    /// The observed twin of each desired pod, all Ready with the same hash.
    fn running(desired: &[DesiredPod], layout: &str) -> Vec<ObservedPod> {
        desired
            .iter()
            .map(|d| ObservedPod {
                name: d.name.clone(),
                owned: true,
                layout: Some(layout.into()),
                range: Some(d.range),
                hash: Some(d.hash.clone()),
                ready: true,
                never_ran: false,
                terminating: false,
            })
            .collect()
    }

    fn names(deletions: &[Deletion]) -> Vec<(&str, DeleteReason)> {
        deletions
            .iter()
            .map(|d| (d.name.as_str(), d.reason))
            .collect()
    }

    #[test]
    fn ranges_are_contiguous_and_the_last_may_be_shorter() {
        assert_eq!(ranges(10, 3), vec![r(0, 2), r(3, 5), r(6, 8), r(9, 9)]);
        assert_eq!(ranges(4, 4), vec![r(0, 3)]);
        assert_eq!(ranges(3, 1), vec![r(0, 0), r(1, 1), r(2, 2)]);
        assert_eq!(ranges(2, 5), vec![r(0, 1)]);
        assert_eq!(ranges(0, 3), vec![]);
        assert_eq!(ranges(10, 3).iter().map(ShardRange::len).sum::<u32>(), 10);
    }

    #[test]
    fn pod_names_are_deterministic() {
        assert_eq!(pod_name("bot", "10", r(3, 5)), "bot-10-3-5");
    }

    #[test]
    fn empty_start_creates_every_pod() {
        let want = desired(10, 3, "h");
        let plan = plan("10", &want, &[], Gates::OPEN, false);
        assert_eq!(
            plan.create,
            ["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"]
        );
        assert!(plan.delete.is_empty());
        assert_eq!(plan.progress.desired_pods, 4);
        assert_eq!(plan.progress.desired_shards, 10);
    }

    #[test]
    fn steady_state_is_a_noop() {
        let want = desired(10, 3, "h");
        let plan = plan("10", &want, &running(&want, "10"), Gates::OPEN, false);
        assert!(plan.is_noop());
        assert!(plan.progress.settled());
        assert_eq!(plan.progress.ready_shards, 10);
    }

    #[test]
    fn blocked_plans_nothing_but_still_counts() {
        let want = desired(10, 3, "h");
        let mut seen = running(&want, "10");
        seen.remove(0);
        let plan = plan("10", &want, &seen, Gates::OPEN, true);
        assert!(plan.is_noop());
        assert_eq!(plan.progress.present_pods, 3);
    }

    #[test]
    fn a_deleted_pod_comes_back() {
        let want = desired(10, 3, "h");
        let mut seen = running(&want, "10");
        seen.remove(1);
        let plan = plan("10", &want, &seen, Gates::OPEN, false);
        assert_eq!(plan.create, ["bot-10-3-5"]);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_terminating_pod_is_not_recreated_until_gone() {
        let want = desired(10, 3, "h");
        let mut seen = running(&want, "10");
        seen[1].terminating = true;
        let plan = plan("10", &want, &seen, Gates::OPEN, false);
        assert!(plan.is_noop());
        assert_eq!(plan.progress.terminating_pods, 1);
    }

    #[test]
    fn foreign_pods_are_left_alone() {
        let want = desired(10, 3, "h");
        let mut seen = running(&want, "10");
        seen.push(ObservedPod {
            name: "bot-10-0-9".into(),
            owned: false,
            layout: Some("10".into()),
            range: Some(r(0, 9)),
            hash: None,
            ready: true,
            never_ran: false,
            terminating: false,
        });
        seen.push(ObservedPod {
            name: "imposter".into(),
            owned: false,
            layout: None,
            range: None,
            hash: None,
            ready: false,
            never_ran: false,
            terminating: false,
        });
        let plan = plan("10", &want, &seen, Gates::OPEN, false);
        assert!(plan.is_noop());
        assert_eq!(plan.progress.owned_pods, 4);
    }

    #[test]
    fn owned_pod_outside_the_plan_is_removed_once_all_are_ready() {
        let want = desired(10, 3, "h");
        let mut seen = running(&want, "10");
        seen.push(ObservedPod {
            name: "bot-10-20-29".into(),
            owned: true,
            layout: Some("10".into()),
            range: Some(r(20, 29)),
            hash: Some("h".into()),
            ready: true,
            never_ran: false,
            terminating: false,
        });
        let plan = plan("10", &want, &seen, Gates::OPEN, false);
        assert_eq!(
            names(&plan.delete),
            [("bot-10-20-29", DeleteReason::OutsidePlan)]
        );
        assert!(plan.create.is_empty());
    }

    #[test]
    fn unlabelled_owned_pods_go_at_once() {
        let want = desired(4, 2, "h");
        let mut seen = running(&want, "4");
        seen.push(ObservedPod {
            name: "stray".into(),
            owned: true,
            layout: None,
            range: None,
            hash: None,
            ready: false,
            never_ran: false,
            terminating: false,
        });
        let plan = plan("4", &want, &seen, Gates::OPEN, false);
        assert_eq!(names(&plan.delete), [("stray", DeleteReason::Unlabelled)]);
    }

    #[test]
    fn drift_is_replaced_one_pod_at_a_time_waiting_for_readiness() {
        let old = desired(10, 3, "old");
        let want = desired(10, 3, "new");
        let mut seen = running(&old, "10");
        let first = plan("10", &want, &seen, Gates::OPEN, false);
        assert_eq!(
            names(&first.delete),
            [("bot-10-0-2", DeleteReason::Drifted)]
        );
        assert_eq!(first.progress.drifted_pods, 4);

        // While it terminates, nothing else moves.
        seen[0].terminating = true;
        let waiting = plan("10", &want, &seen, Gates::OPEN, false);
        assert!(waiting.is_noop());

        // Gone: it is created again with the new spec, and nothing else moves.
        seen.remove(0);
        let recreate = plan("10", &want, &seen, Gates::OPEN, false);
        assert_eq!(recreate.create, ["bot-10-0-2"]);
        assert!(recreate.delete.is_empty());

        // Created but not Ready yet: still nothing else moves.
        seen.insert(
            0,
            ObservedPod {
                hash: Some("new".into()),
                ready: false,
                ..running(&want, "10").remove(0)
            },
        );
        let not_ready = plan("10", &want, &seen, Gates::OPEN, false);
        assert!(not_ready.is_noop());

        // Ready: the next drifted pod goes.
        seen[0].ready = true;
        let next = plan("10", &want, &seen, Gates::OPEN, false);
        assert_eq!(names(&next.delete), [("bot-10-3-5", DeleteReason::Drifted)]);
    }

    #[test]
    fn broken_drifted_pods_are_replaced_even_when_others_are_not_ready() {
        let old = desired(4, 2, "old");
        let want = desired(4, 2, "new");
        let mut seen = running(&old, "4");
        seen[0].ready = false;
        seen[1].ready = false;
        let plan = plan("4", &want, &seen, Gates::OPEN, false);
        assert_eq!(names(&plan.delete), [("bot-4-0-1", DeleteReason::Drifted)]);
    }

    #[test]
    fn drifted_pods_that_never_ran_are_replaced_all_at_once() {
        // Every pod stuck pulling a bad image; the spec is fixed. They hold no session, so a roll
        // has nothing to wait for (issue 11, item 13).
        let old = desired(4, 1, "bad-image");
        let want = desired(4, 1, "fixed");
        let mut seen = running(&old, "4");
        for pod in &mut seen {
            pod.ready = false;
            pod.never_ran = true;
        }
        let plan_all = plan("4", &want, &seen, Gates::OPEN, false);
        assert_eq!(plan_all.delete.len(), 4, "{:?}", plan_all.delete);
        assert!(
            plan_all
                .delete
                .iter()
                .all(|d| d.reason == DeleteReason::Drifted)
        );

        // One of them ran (it may hold a session): that one still waits its turn, and the
        // one-at-a-time roll goes on beside the pods that never ran.
        seen[0].never_ran = false;
        seen[0].ready = true;
        let mixed = plan("4", &want, &seen, Gates::OPEN, false);
        let mut gone: Vec<&str> = mixed.delete.iter().map(|d| d.name.as_str()).collect();
        gone.sort_unstable();
        assert_eq!(gone, ["bot-4-1-1", "bot-4-2-2", "bot-4-3-3"]);
    }

    #[test]
    fn old_layouts_go_only_when_the_hand_over_says_so() {
        let old = desired(10, 3, "h");
        let want = desired(12, 3, "h");
        let mut seen = running(&old, "10");

        // A reshard starts: the new layout's pods are created beside the old ones.
        let start = plan("12", &want, &seen, Gates::OPEN, false);
        assert_eq!(start.create.len(), 4);
        assert!(start.delete.is_empty());
        assert_eq!(start.progress.old_layout_pods, 4);
        assert_eq!(start.progress.complete_old_layouts, ["10"]);

        // Even complete and Ready, the new layout does not remove the old one by itself.
        seen.extend(running(&want, "12"));
        let ready = plan("12", &want, &seen, Gates::OPEN, false);
        assert!(ready.is_noop());
        assert!(!ready.progress.settled());

        // The hand-over retired layout 10: its pods go.
        let retired = ["10".to_string()];
        let gates = Gates {
            create: true,
            delete_layouts: &retired,
        };
        let flip = plan("12", &want, &seen, gates, false);
        assert_eq!(flip.delete.len(), 4);
        assert!(
            flip.delete
                .iter()
                .all(|d| d.reason == DeleteReason::OldLayout && d.name.starts_with("bot-10-"))
        );
    }

    #[test]
    fn creation_waits_when_the_gates_are_closed() {
        // A refused reshard (budget) or Recreate's first half: no pod of the new layout starts.
        let old = desired(10, 3, "h");
        let want = desired(12, 3, "h");
        let seen = running(&old, "10");
        let closed = Gates {
            create: false,
            delete_layouts: &[],
        };
        let plan = plan("12", &want, &seen, closed, false);
        assert!(plan.is_noop());
        assert_eq!(plan.progress.old_layout_pods, 4);
    }

    #[test]
    fn repacking_rolls_without_two_pods_holding_one_shard() {
        // shardsPerPod 2 -> 3 on the same total: old ranges 0-1, 2-3, 4-5.
        let old = desired(6, 2, "h");
        let want = desired(6, 3, "h");
        let mut seen = running(&old, "6");

        let first = plan("6", &want, &seen, Gates::OPEN, false);
        assert!(
            first.create.is_empty(),
            "every new range overlaps an old pod"
        );
        assert_eq!(
            names(&first.delete),
            [("bot-6-0-1", DeleteReason::OutsidePlan)]
        );

        seen.remove(0);
        let second = plan("6", &want, &seen, Gates::OPEN, false);
        assert!(second.create.is_empty(), "0-2 still overlaps 2-3");
        assert_eq!(
            names(&second.delete),
            [("bot-6-2-3", DeleteReason::OutsidePlan)]
        );

        seen.remove(0);
        let third = plan("6", &want, &seen, Gates::OPEN, false);
        assert_eq!(third.create, ["bot-6-0-2"]);
        assert!(third.delete.is_empty(), "wait for the new pod first");
    }

    #[test]
    fn covered_shards_count_each_shard_once_within_the_total() {
        assert_eq!(covered_shards([r(0, 1), r(2, 3)], 4), 4);
        assert_eq!(covered_shards([r(2, 3), r(0, 1)], 8), 4);
        assert_eq!(covered_shards([r(0, 2), r(1, 3)], 8), 4, "overlap once");
        assert_eq!(covered_shards([r(0, 5), r(2, 3)], 8), 6, "inside another");
        assert_eq!(covered_shards([r(6, 9)], 8), 2, "beyond the total");
        assert_eq!(covered_shards([], 8), 0);
        assert_eq!(covered_shards([r(0, 0)], 0), 0);
    }

    #[test]
    fn ready_shards_are_counted_per_layout() {
        let old = desired(8, 2, "h");
        let want = desired(12, 3, "h");
        let mut seen = running(&old, "8");
        seen[1].ready = false;
        seen[2].terminating = true;
        let mut new = running(&want, "12");
        new[0].ready = false;
        seen.extend(new);
        let plan = plan("12", &want, &seen, Gates::OPEN, false);
        assert_eq!(
            plan.progress.ready_shards_by_layout,
            BTreeMap::from([("8".to_string(), 4), ("12".to_string(), 9)])
        );
    }

    #[test]
    fn completeness_of_an_old_layout_needs_every_shard_ready() {
        let old = desired(10, 3, "h");
        let mut seen = running(&old, "10");
        seen[2].ready = false;
        let want = desired(12, 3, "h");
        let plan = plan("12", &want, &seen, Gates::OPEN, false);
        assert!(plan.progress.complete_old_layouts.is_empty());
    }
}
