//! The next reshard step, without a client: from the spec's shard total, the roles document in
//! Redis (`P:active-layout`) and each layout's view, what happens next in the hand-over protocol
//! of `docs/resharding.md`. A hand-over under way goes on in [`crate::reshard::steps`]; this file
//! keeps a steady layout, retires leftovers, checks the budget and starts a reshard.
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

use shardset_contract::{LayoutRoles, Role, layout_name};

use crate::crd::ReshardStrategy;
use crate::reshard::decision::{Decision, Inputs, Phase, next_doc};
use crate::reshard::steps::continue_handover;
use crate::reshard::views::LayoutView;

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

/// `(from, to)` of the hand-over the document describes, if any.
fn handover(doc: Option<&LayoutRoles>) -> Option<(String, String)> {
    let doc = doc?;
    Some((doc.from.clone()?, doc.to.clone()?))
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
            ..LayoutView::default()
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

    /// `layout` of `layouts` with one shard behind (`reason`), or keeping up with `lapse_mark`.
    fn pace(layouts: &mut [LayoutView], layout: u32, behind: Option<&str>, lapse_mark: u64) {
        let v = layouts
            .iter_mut()
            .find(|v| v.total == layout)
            .expect("layout");
        v.behind = behind.map(|b| format!("shard 5 on bot-{layout}-4-7 ({b})"));
        v.lapse_mark = lapse_mark;
    }

    #[test]
    fn a_shard_behind_holds_every_w_countdown_and_a_lapse_restarts_it() {
        // Each step that waits W: (document, the roles it writes after W).
        let steps = [
            (
                handing(1, &[(16, Role::Active), (32, Role::Standby)], 16, 32),
                r(&[(16, Role::Claiming), (32, Role::Standby)]),
            ),
            (
                handing(3, &[(16, Role::Claiming), (32, Role::Claiming)], 16, 32),
                r(&[(16, Role::Retired), (32, Role::Claiming)]),
            ),
            (
                handing(4, &[(16, Role::Retired), (32, Role::Claiming)], 16, 32),
                r(&[(16, Role::Retired), (32, Role::Active)]),
            ),
        ];
        for (doc, after) in steps {
            // Either layout's shard may lapse: a resume of the new one, a late handler of the
            // old one.
            for (lapsing, reason) in [(32, "resuming"), (16, "handling late")] {
                let rev = doc.revision;
                let mut layouts = vec![view(16, 2, 16, Some(rev)), view(32, 4, 32, Some(rev))];
                let at = |now_ms: u64, doc: &LayoutRoles, layouts: &[LayoutView]| {
                    let mut i = inputs(32, Some(doc), layouts);
                    i.now_ms = now_ms;
                    decide(&i)
                };
                // Behind before the countdown starts: nothing is marked.
                pace(&mut layouts, lapsing, Some(reason), 0);
                let d = at(100_000, &doc, &layouts);
                assert!(d.write.is_none(), "{d:?}");
                assert!(d.message.contains(reason), "{}", d.message);
                // Every shard keeps up: the countdown starts, with the lapses seen.
                pace(&mut layouts, lapsing, None, 1);
                let marked = at(101_000, &doc, &layouts).write.expect("mark");
                assert_eq!(
                    marked.revision, rev,
                    "bookkeeping: the workers see no change"
                );
                assert_eq!(marked.acked_at_ms, Some(101_000));
                // A shard falls behind before W passed, and stays behind past it: held.
                pace(&mut layouts, lapsing, Some(reason), 1);
                let d = at(101_000 + W + 5_000, &marked, &layouts);
                assert!(
                    d.write.is_none(),
                    "W passed, but a shard is {reason}: {d:?}"
                );
                // It keeps up again (one lapse more): W counts again from now, not from the
                // first mark.
                pace(&mut layouts, lapsing, None, 2);
                let now = 101_000 + W + 6_000;
                let d = at(now, &marked, &layouts);
                let restarted = d.write.expect("restart");
                assert_eq!(
                    (restarted.revision, restarted.acked_at_ms),
                    (rev, Some(now))
                );
                assert!(d.message.contains("W restarted"), "{}", d.message);
                assert!(at(now + W - 1, &restarted, &layouts).write.is_none());
                let next = at(now + W, &restarted, &layouts).write.expect("next step");
                assert_eq!(roles_of(&next), after);
                assert_eq!((next.acked_at_ms, next.live_mark), (None, None));
            }
        }
    }

    #[test]
    fn a_lapse_between_two_reads_restarts_w_too() {
        // The shard reconnected and was READY again before the operator looked: only its
        // lapse count says so.
        let both = handing(3, &[(16, Role::Claiming), (32, Role::Claiming)], 16, 32);
        let mut layouts = vec![view(16, 2, 16, Some(3)), view(32, 4, 32, Some(3))];
        pace(&mut layouts, 32, None, 7);
        let marked = decide(&inputs(32, Some(&both), &layouts))
            .write
            .expect("mark");
        pace(&mut layouts, 32, None, 8);
        let mut i = inputs(32, Some(&marked), &layouts);
        i.now_ms += W;
        let d = decide(&i);
        let restarted = d.write.expect("restart");
        assert_eq!(
            roles_of(&restarted),
            roles_of(&both),
            "not the next step: {}",
            d.message
        );
        assert_eq!(restarted.acked_at_ms, Some(100_000 + W));
        // Another layout's lapses, or the same ones in another layout, are not the same mark.
        let mut swapped = layouts.clone();
        pace(&mut swapped, 32, None, 0);
        pace(&mut swapped, 16, None, 8);
        assert_ne!(
            crate::reshard::views::lapse_mark(&swapped),
            crate::reshard::views::lapse_mark(&layouts)
        );
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
    fn recreate_does_not_wait_for_old_pods_that_never_ran() {
        // Layout 16's pods are all stuck in ImagePullBackOff: no shard of it ever reported.
        use crate::plan::{ObservedPod, ShardRange};
        let observed: Vec<ObservedPod> = (0..2)
            .map(|i| ObservedPod {
                name: format!("bot-16-{}-{}", i * 8, i * 8 + 7),
                owned: true,
                layout: Some("16".into()),
                range: Some(ShardRange {
                    first: i * 8,
                    last: i * 8 + 7,
                }),
                hash: Some("h".into()),
                ready: false,
                never_ran: true,
                terminating: false,
            })
            .collect();
        let layouts = crate::reshard::views::views(&observed, &Default::default(), 32);
        let doc1 = doc(1, &[(16, Role::Retired), (32, Role::Active)]);
        let mut i = inputs(32, Some(&doc1), &layouts);
        i.strategy = ReshardStrategy::Recreate;
        let d = decide(&i);
        assert_eq!(d.delete, ["16"], "{d:?}");
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
}
