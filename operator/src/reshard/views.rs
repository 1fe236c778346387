//! Each layout of a ShardSet as a reshard decision sees it, without a client: its owned pods
//! (running and terminating), the shards READY in a Ready pod, the lowest roles revision its
//! running shards acknowledged, and whether they keep up (READY and handling in time, and how
//! often they lapsed: what a hand-over's `W` countdown runs on), all from the observed pods and
//! the shards' status records; and which of them act on events under the roles document. A pod
//! that never ran (its image never pulled) is not awaited: it never acted on anything.

use std::collections::BTreeMap;

use shardset_contract::{LayoutRoles, ShardState, ShardStatus, layout_name};
use xxhash_rust::xxh3::Xxh3;

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
    /// A shard of the running pods that does not keep up now (not READY, handling late, or
    /// without a status record), for messages; `None` when every one keeps up.
    pub behind: Option<String>,
    /// A digest of every running shard's `(pod, shard, lapses)`: it changes when a shard lapses
    /// (or its pod is replaced), even between two reads.
    pub lapse_mark: u64,
}

impl LayoutView {
    pub fn name(&self) -> String {
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

    /// Every shard of the running pods keeps up.
    pub fn keeping_up(&self) -> bool {
        self.behind.is_none()
    }
}

/// The digest of one layout's `(shard, pod) → lapses`.
fn digest(lapses: &BTreeMap<(u32, &str), u64>) -> u64 {
    let mut hasher = Xxh3::new();
    for ((shard, pod), lapses) in lapses {
        hasher.update(&shard.to_le_bytes());
        hasher.update(pod.as_bytes());
        hasher.update(&[0]);
        hasher.update(&lapses.to_le_bytes());
    }
    hasher.digest()
}

/// One digest of the layouts' lapse marks, in the order given: what a hand-over's `W` countdown
/// remembers (`LayoutRoles::live_mark`) to see a lapse of any shard of either layout.
pub fn lapse_mark<'v>(layouts: impl IntoIterator<Item = &'v LayoutView>) -> u64 {
    let mut hasher = Xxh3::new();
    for view in layouts {
        hasher.update(&view.total.to_le_bytes());
        hasher.update(&view.lapse_mark.to_le_bytes());
    }
    hasher.digest()
}

/// Why a shard does not keep up, for messages (no figures: the status must not change per pass).
fn behind_reason(record: &ShardStatus) -> &'static str {
    match (record.state, record.behind_ms) {
        (ShardState::Ready, Some(_)) => "handling late",
        (ShardState::Resuming, _) => "resuming",
        (ShardState::Reconnecting, _) => "reconnecting",
        (ShardState::Ready, None) => "keeping up",
        _ => "not ready",
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
    // Per layout, `(shard, pod) → lapses` (u64::MAX without a record), in a fixed order whatever
    // the order of the pods listed.
    let mut lapses: BTreeMap<u32, BTreeMap<(u32, &str), u64>> = BTreeMap::new();
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
        if pod.never_ran {
            // No worker of it ever read the roles: nothing to acknowledge, and it reads them
            // before it acts if it ever starts.
            continue;
        }
        let records = statuses.get(&total);
        let layout_lapses = lapses.entry(total).or_default();
        for shard in range.first..=range.last.min(total.saturating_sub(1)) {
            let record = records
                .and_then(|r| r.get(shard as usize))
                .and_then(Option::as_ref);
            if pod.ready && record.is_some_and(|r| r.state == ShardState::Ready) {
                view.ready_shards += 1;
            }
            layout_lapses.insert(
                (shard, pod.name.as_str()),
                record.map_or(u64::MAX, |r| r.lapses),
            );
            if view.behind.is_none() {
                view.behind = match record {
                    None => Some(format!("shard {shard} on {} (no status)", pod.name)),
                    Some(r) if !r.keeping_up() => Some(format!(
                        "shard {shard} on {} ({})",
                        pod.name,
                        behind_reason(r)
                    )),
                    Some(_) => None,
                };
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
        view.lapse_mark = lapses.get(&view.total).map_or(0, digest);
    }
    by_layout.into_values().collect()
}

/// The layouts with running pods whose role lets them act on events (active, or claiming during
/// a hand-over); every layout with pods when no roles were ever written.
pub fn acting(doc: Option<&LayoutRoles>, views: &[LayoutView]) -> Vec<String> {
    views
        .iter()
        .filter(|v| v.pods > 0)
        .map(LayoutView::name)
        .filter(|name| LayoutRoles::role_of(doc, name).may_act())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardset_contract::Role;

    #[test]
    fn the_acting_layouts_follow_the_roles() {
        let with_pods = |total, pods| LayoutView {
            total,
            pods,
            ..LayoutView::default()
        };
        let v = [with_pods(8, 4), with_pods(12, 6), with_pods(16, 0)];
        assert_eq!(acting(None, &v), ["8", "12"], "no roles: every layout acts");
        let doc = |roles: &[(&str, Role)]| LayoutRoles {
            revision: 3,
            roles: roles.iter().map(|(l, r)| (l.to_string(), *r)).collect(),
            ..LayoutRoles::default()
        };
        let standby = doc(&[("8", Role::Active), ("12", Role::Standby)]);
        assert_eq!(acting(Some(&standby), &v), ["8"]);
        let both = doc(&[("8", Role::Claiming), ("12", Role::Claiming)]);
        assert_eq!(acting(Some(&both), &v), ["8", "12"]);
        let retiring = doc(&[("8", Role::Retired), ("12", Role::Claiming)]);
        assert_eq!(acting(Some(&retiring), &v), ["12"]);
        let recreate = doc(&[("8", Role::Retired), ("16", Role::Active)]);
        assert!(
            acting(Some(&recreate), &v).is_empty(),
            "Recreate's gap: the active layout has no pods yet"
        );
    }

    #[test]
    fn acknowledgements_of_layouts_without_running_pods_are_not_awaited() {
        let v = LayoutView {
            total: 16,
            ..LayoutView::default()
        };
        assert!(v.acked(7));
        let v = LayoutView {
            total: 16,
            pods: 2,
            ready_shards: 16,
            ..LayoutView::default()
        };
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
            never_ran: false,
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
            lapses: 0,
            behind_ms: None,
            bus_accepting: None,
        })
    }

    #[test]
    fn pods_that_never_ran_are_not_awaited() {
        // Layout 4's pods are stuck pulling their image: no worker ever read the roles, and none
        // ever will act without reading them first (issue 11, item 13).
        let never = |name: &str, first: u32, last: u32| ObservedPod {
            never_ran: true,
            ..pod(name, 4, first, last, false)
        };
        let observed = [never("bot-4-0-1", 0, 1), never("bot-4-2-3", 2, 3)];
        let v = views(&observed, &BTreeMap::new(), 8);
        let four = v.iter().find(|v| v.total == 4).expect("layout 4");
        assert_eq!(four.pods, 2, "still counted: they must be deleted");
        assert!(four.acked(7), "{four:?}");
        assert_eq!(four.unacked, None);

        // One of them ran (it reported at revision 2): that one is awaited.
        let observed = [never("bot-4-0-1", 0, 1), pod("bot-4-2-3", 4, 2, 3, false)];
        let statuses =
            BTreeMap::from([(4, vec![None, None, status(ShardState::Resuming, 2), None])]);
        let v = views(&observed, &statuses, 8);
        let four = v.iter().find(|v| v.total == 4).expect("layout 4");
        assert!(!four.acked(2), "shard 3 on the pod that ran never reported");
        assert_eq!(
            four.unacked.as_deref(),
            Some("shard 3 on bot-4-2-3 (no status)")
        );
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
    fn a_layout_keeps_up_while_every_running_shard_is_ready_and_in_time() {
        let observed = [
            pod("bot-4-0-1", 4, 0, 1, true),
            pod("bot-4-2-3", 4, 2, 3, true),
        ];
        let with = |records: Vec<Option<ShardStatus>>| {
            let statuses = BTreeMap::from([(4, records)]);
            views(&observed, &statuses, 4)
                .into_iter()
                .find(|v| v.total == 4)
                .expect("layout 4")
        };
        let ready = |lapses: u64| status(ShardState::Ready, 1).map(|s| ShardStatus { lapses, ..s });
        let steady = with(vec![ready(0), ready(1), ready(0), ready(0)]);
        assert!(steady.keeping_up(), "{steady:?}");

        for (record, reason) in [
            (
                status(ShardState::Resuming, 1),
                "shard 2 on bot-4-2-3 (resuming)",
            ),
            (
                status(ShardState::Reconnecting, 1),
                "shard 2 on bot-4-2-3 (reconnecting)",
            ),
            (
                ready(0).map(|s| ShardStatus {
                    behind_ms: Some(6_000),
                    ..s
                }),
                "shard 2 on bot-4-2-3 (handling late)",
            ),
            (None, "shard 2 on bot-4-2-3 (no status)"),
        ] {
            let v = with(vec![ready(0), ready(1), record, ready(0)]);
            assert!(!v.keeping_up());
            assert_eq!(v.behind.as_deref(), Some(reason));
        }

        // One lapse more of any shard, or a shard's pod replaced, changes the mark.
        let lapsed = with(vec![ready(0), ready(1), ready(1), ready(0)]);
        assert!(lapsed.keeping_up());
        assert_ne!(lapsed.lapse_mark, steady.lapse_mark);
        let observed = [
            pod("bot-4-0-1", 4, 0, 1, true),
            pod("bot-4-2-3-new", 4, 2, 3, true),
        ];
        let statuses = BTreeMap::from([(4, vec![ready(0), ready(1), ready(0), ready(0)])]);
        let replaced = views(&observed, &statuses, 4)
            .into_iter()
            .find(|v| v.total == 4)
            .expect("layout 4");
        assert_ne!(replaced.lapse_mark, steady.lapse_mark);
        // The same records read again: the same mark.
        assert_eq!(
            with(vec![ready(0), ready(1), ready(0), ready(0)]).lapse_mark,
            steady.lapse_mark
        );
    }
}
