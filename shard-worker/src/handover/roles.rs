//! What this layout does with an event during a reshard, without I/O (`docs/resharding.md`).
//!
//! The operator gives each layout a [`Role`] in `P:active-layout`; a worker's shards share one
//! [`Roles`]. For each event the handler wants to act on, [`Roles::decide`] answers: act, skip,
//! or claim it first (the claim itself is I/O, in [`super::acting`]). While a reshard is under
//! way an active layout remembers what it acted on for a while, so that on becoming `claiming`
//! it can claim those events too (the back-fill): the other layout, which may receive the same
//! event up to `W` later, must then lose its claim on them.

use std::collections::VecDeque;
use std::time::Duration;

use shardset_contract::Role;

/// The identity of one event across layouts: XXH3-128 of the event name, one NUL byte, and the
/// raw `d` text. Discord serialises an event once and sends the same `d` to every session that
/// receives it (any layout), so both layouts compute the same key without talking to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimKey(pub u128);

impl ClaimKey {
    /// The key of event `event` with payload `data` (the raw JSON of `d`).
    pub fn of(event: &str, data: &str) -> Self {
        Self::of_raw(event, data.as_bytes())
    }

    /// [`ClaimKey::of`] on the raw bytes of `d`.
    pub fn of_raw(event: &str, data: &[u8]) -> Self {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(event.as_bytes());
        hasher.update(&[0]);
        hasher.update(data);
        Self(hasher.digest128())
    }

    /// 32 lowercase hex digits, as used in `P:claim:<hex>`.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Act on it (role `active`).
    Act,
    /// Do not act (role `standby` or `retired`).
    Skip,
    /// Act only after winning its claim (role `claiming`).
    Claim,
    /// The role is not known yet (the document was never read): wait for it.
    Unknown,
}

/// A change of role or revision that [`Roles::apply`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: Option<Role>,
    pub to: Role,
    pub revision: u64,
    /// Events acted on recently that must be claimed before the change is acknowledged
    /// (non-empty only when going from `active` to `claiming`).
    pub backfill: Vec<ClaimKey>,
}

/// The role of one layout as a worker applies it, and what it acted on recently.
#[derive(Debug, Clone)]
pub struct Roles {
    role: Option<Role>,
    revision: u64,
    /// Remember acted-on events (a reshard is under way).
    recording: bool,
    /// How long acted-on events are remembered (at least `W`; the worker uses `2 W`).
    retention_ms: u64,
    /// `(when, key)` of events acted on while `active` and recording, oldest first.
    recent: VecDeque<(u64, ClaimKey)>,
}

impl Roles {
    /// Roles not known yet; acted-on events are kept for `retention` while recording.
    pub fn new(retention: Duration) -> Self {
        Self {
            role: None,
            revision: 0,
            recording: false,
            retention_ms: retention.as_millis() as u64,
            recent: VecDeque::new(),
        }
    }

    /// Always `role` (a worker without Redis: tests, a single process).
    pub fn fixed(role: Role) -> Self {
        Self {
            role: Some(role),
            ..Self::new(Duration::ZERO)
        }
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether acted-on events are remembered (a reshard is under way).
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Events remembered for a back-fill.
    pub fn remembered(&self) -> usize {
        self.recent.len()
    }

    /// Whether a missing roles document leaves the role as it is. "No document" means every
    /// layout is active only before any document was ever seen (no reshard ever ran). Once a
    /// revision above 0 was applied, the document can only be missing because Redis lost it (a
    /// flush, a restart without persistence, a failover mid-reshard): acting on it would make
    /// every layout active at once, so the last role holds until the operator writes the roles
    /// again.
    pub fn keeps_role_without_document(&self) -> bool {
        self.revision > 0
    }

    /// The decision for the event `key` that the handler wants to act on, at `now_ms` (a
    /// monotonic clock). An `active` layout that records remembers the event.
    pub fn decide(&mut self, key: ClaimKey, now_ms: u64) -> Decision {
        match self.role {
            None => Decision::Unknown,
            Some(Role::Active) => {
                if self.recording {
                    self.prune(now_ms);
                    self.recent.push_back((now_ms, key));
                }
                Decision::Act
            }
            Some(Role::Claiming) => Decision::Claim,
            Some(Role::Standby | Role::Retired) => Decision::Skip,
        }
    }

    /// Applies `role` at `revision`. `recording`: whether a reshard is under way (remember
    /// acted-on events). Returns the change, if the role or the revision changed; decisions made
    /// after this call follow the new role.
    pub fn apply(
        &mut self,
        role: Role,
        revision: u64,
        recording: bool,
        now_ms: u64,
    ) -> Option<Change> {
        self.recording = recording;
        if !recording {
            self.recent.clear();
        }
        if self.role == Some(role) && self.revision == revision {
            return None;
        }
        let from = self.role;
        let backfill = if from == Some(Role::Active) && role == Role::Claiming {
            self.prune(now_ms);
            self.recent.iter().map(|&(_, key)| key).collect()
        } else {
            Vec::new()
        };
        if role != Role::Active {
            self.recent.clear();
        }
        self.role = Some(role);
        self.revision = revision;
        Some(Change {
            from,
            to: role,
            revision,
            backfill,
        })
    }

    fn prune(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.retention_ms);
        while self.recent.front().is_some_and(|&(at, _)| at < oldest) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> ClaimKey {
        ClaimKey::of("MESSAGE_CREATE", &format!(r#"{{"id":"{n}"}}"#))
    }

    #[test]
    fn keys_depend_on_the_event_and_every_byte_of_d() {
        let d = r#"{"id":"1","content":"hi"}"#;
        assert_eq!(
            ClaimKey::of("MESSAGE_CREATE", d),
            ClaimKey::of("MESSAGE_CREATE", d)
        );
        assert_ne!(
            ClaimKey::of("MESSAGE_CREATE", d),
            ClaimKey::of("MESSAGE_UPDATE", d)
        );
        assert_ne!(
            ClaimKey::of("MESSAGE_CREATE", d),
            ClaimKey::of("MESSAGE_CREATE", r#"{"id":"1","content":"hi "}"#)
        );
        // The separator keeps "AB"+"C" apart from "A"+"BC".
        assert_ne!(ClaimKey::of("AB", "C"), ClaimKey::of("A", "BC"));
        assert_eq!(ClaimKey::of("A", "B").hex().len(), 32);
    }

    #[test]
    fn claim_key_is_xxh3_128_of_name_nul_data() {
        // The protocol document gives this formula to other libraries; pin it.
        let expected = xxhash_rust::xxh3::xxh3_128(b"MESSAGE_CREATE\0{\"id\":\"1\"}");
        assert_eq!(ClaimKey::of("MESSAGE_CREATE", r#"{"id":"1"}"#).0, expected);
    }

    #[test]
    fn nothing_is_decided_before_the_role_is_known() {
        let mut roles = Roles::new(Duration::from_secs(20));
        assert_eq!(roles.decide(key(1), 0), Decision::Unknown);
        roles.apply(Role::Standby, 1, true, 0);
        assert_eq!(roles.decide(key(1), 0), Decision::Skip);
        roles.apply(Role::Claiming, 2, true, 0);
        assert_eq!(roles.decide(key(1), 0), Decision::Claim);
        roles.apply(Role::Retired, 3, true, 0);
        assert_eq!(roles.decide(key(1), 0), Decision::Skip);
        roles.apply(Role::Active, 4, false, 0);
        assert_eq!(roles.decide(key(1), 0), Decision::Act);
    }

    #[test]
    fn active_to_claiming_backfills_what_was_acted_on_within_the_retention() {
        let mut roles = Roles::new(Duration::from_millis(20_000));
        roles.apply(Role::Active, 1, true, 0);
        for (i, at) in [0u64, 5_000, 15_000, 29_000].into_iter().enumerate() {
            assert_eq!(roles.decide(key(i as u32), at), Decision::Act);
        }
        let change = roles
            .apply(Role::Claiming, 2, true, 30_000)
            .expect("changed");
        assert_eq!(change.from, Some(Role::Active));
        assert_eq!(change.to, Role::Claiming);
        // Older than 20 s at 30 s: acted on at 0 and 5 s, forgotten.
        assert_eq!(change.backfill, vec![key(2), key(3)]);
        assert_eq!(roles.remembered(), 0, "nothing kept once claiming");
    }

    #[test]
    fn nothing_is_remembered_without_a_reshard() {
        let mut roles = Roles::new(Duration::from_secs(20));
        roles.apply(Role::Active, 0, false, 0);
        roles.decide(key(1), 10);
        assert_eq!(roles.remembered(), 0);
        // A reshard starts: remembering starts with it.
        assert!(roles.apply(Role::Active, 5, true, 20).is_some());
        roles.decide(key(2), 30);
        let change = roles.apply(Role::Claiming, 6, true, 40).expect("changed");
        assert_eq!(change.backfill, vec![key(2)]);
    }

    #[test]
    fn other_changes_need_no_backfill() {
        let mut roles = Roles::new(Duration::from_secs(20));
        roles.apply(Role::Standby, 1, true, 0);
        let change = roles.apply(Role::Claiming, 2, true, 1).expect("changed");
        assert!(change.backfill.is_empty(), "standby acted on nothing");
        roles.apply(Role::Active, 3, true, 2);
        roles.decide(key(1), 3);
        let retired = roles.apply(Role::Retired, 4, true, 4).expect("changed");
        assert!(
            retired.backfill.is_empty(),
            "retired without claiming: no other layout claims (Recreate)"
        );
    }

    #[test]
    fn a_lost_document_keeps_a_role_once_a_revision_was_seen() {
        let mut roles = Roles::new(Duration::from_secs(20));
        assert!(!roles.keeps_role_without_document(), "never seen: all act");
        roles.apply(Role::Active, 0, false, 0);
        assert!(
            !roles.keeps_role_without_document(),
            "revision 0 is no document"
        );
        roles.apply(Role::Standby, 4, true, 1);
        assert!(roles.keeps_role_without_document());
        // A document written again from a fresh revision (the operator after a loss) applies.
        assert!(roles.apply(Role::Active, 1, false, 2).is_some());
        assert_eq!(roles.role(), Some(Role::Active));
    }

    #[test]
    fn a_new_revision_with_the_same_role_is_a_change_to_acknowledge() {
        let mut roles = Roles::new(Duration::from_secs(20));
        roles.apply(Role::Active, 1, false, 0);
        assert!(roles.apply(Role::Active, 1, false, 1).is_none());
        let change = roles.apply(Role::Active, 2, true, 2).expect("ack needed");
        assert_eq!(
            (change.from, change.to, change.revision),
            (Some(Role::Active), Role::Active, 2)
        );
        assert_eq!(roles.revision(), 2);
    }
}
