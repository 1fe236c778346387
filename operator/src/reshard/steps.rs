//! The steps of a BlueGreen hand-over under way (`from` → `to`, named by the roles document),
//! without a client: each role change waits for the acknowledgements of the layouts concerned,
//! and where the protocol says so for `W` after them (measured from `ackedAtMs`, Redis time),
//! counted while every shard of both layouts keeps up and restarted when one lapsed; a new
//! target abandons `to` while it has not claimed anything. Reached through `decide` (the
//! file beside this one), whose tests walk every step.

use std::collections::BTreeMap;

use shardset_contract::{LayoutRoles, Role, layout_name};

use crate::reshard::decision::{Decision, Inputs, Phase, next_doc};
use crate::reshard::views::{LayoutView, lapse_mark};

/// The next step of the hand-over from `from` to `to`; `deletable` are the retired layouts
/// (other than these two) whose pods may go.
pub fn continue_handover(
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
    // Every shard of both layouts keeps up (READY, handling in time), and which lapses they
    // have had: `W` only bounds how far apart the layouts handle an event while both keep up
    // (`docs/resharding.md`, "What bounds W").
    let behind = [from, to]
        .into_iter()
        .find_map(|l| view(l).and_then(|v| v.behind.clone()));
    let mark = lapse_mark([from, to].into_iter().filter_map(view));
    // Marks the acknowledgements and the lapses seen (same revision: the workers see no change)
    // or, once `W` has passed since with every shard keeping up and none lapsing meanwhile,
    // writes `next`. A shard that falls behind holds the countdown; one that lapsed since it
    // started (even between two reads) restarts it once every shard keeps up again.
    let after_window = |phase: Phase, next: LayoutRoles, what: &str| {
        let waiting = format!("{what}: acknowledged; waiting W ({} ms)", i.window_ms);
        if let Some(behind) = &behind {
            return wait(
                phase,
                format!("{what}: acknowledged; W waits until {behind} keeps up again"),
            );
        }
        match doc.acked_at_ms {
            Some(at) if doc.live_mark == Some(mark) => {
                if i.now_ms >= at.saturating_add(i.window_ms) {
                    Decision {
                        write: Some(next),
                        ..wait(phase, format!("{what}: acknowledged, W passed"))
                    }
                } else {
                    // No countdown in the message: it goes into the status, which must not
                    // change per pass.
                    wait(phase, waiting)
                }
            }
            started => {
                let mut marked = doc.clone();
                marked.acked_at_ms = Some(i.now_ms);
                marked.live_mark = Some(mark);
                let message = match started {
                    None => waiting,
                    Some(_) => format!(
                        "{what}: a shard fell behind meanwhile; W restarted ({} ms)",
                        i.window_ms
                    ),
                };
                Decision {
                    write: Some(marked),
                    ..wait(phase, message)
                }
            }
        }
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
