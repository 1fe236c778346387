//! The Redis key layout of one bot (`docs/redis-protocol.md`, "Keys"): every key of a bot shares
//! the hash tag `{<app_id>}`, so the protocol's Lua scripts run on Redis Cluster too.

/// The rate-limit key ("bucket") of a shard: `shard_id % max_concurrency`.
/// Source: discord-api-docs `developers/events/gateway.mdx`, "Max concurrency".
pub fn bucket(shard_id: u32, max_concurrency: u32) -> u32 {
    shard_id % max_concurrency.max(1)
}

/// The name of the layout that runs `total` shards. A layout is one complete set of sessions
/// with one `num_shards`; during a BlueGreen reshard two layouts run side by side.
pub fn layout_name(total: u32) -> String {
    total.to_string()
}

/// How long [`Keys::cleaned`] stands after a cleanup: well past any worker's epoch hold (the
/// connect bound, 10.6 s at Discord's 5 s window) and the old pods' last Identify.
pub const CLEANED_TTL_MS: u64 = 60_000;

/// The Redis keys of one bot. Every key shares the hash tag `{<app_id>}` so that the Lua scripts
/// of the protocol run on Redis Cluster too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of the bot (application) `app_id`.
    pub fn new(app_id: u64) -> Self {
        Self {
            prefix: format!("shardset:{{{app_id}}}"),
        }
    }

    /// The common prefix `shardset:{<app_id>}`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Marker with no TTL; its absence means Redis lost data and no gate is granted for a window.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Left by the operator's cleanup after it deleted the bot's keys, expiring after
    /// [`CLEANED_TTL_MS`]: a bot deleted and created again within it may still have an Identify
    /// of its old pods within the window, so its epoch is not settled early (the hold stays).
    /// Outside the `shardset:{<app_id>}:*` pattern on purpose (same hash tag; inside the ACL's
    /// `~shardset:*`): "no key of the bot left" stays true after a cleanup.
    pub fn cleaned(&self) -> String {
        let tag = self.prefix.trim_start_matches("shardset:");
        format!("shardset:cleaned:{tag}")
    }

    /// The Identify gate of one bucket (`shard_id % max_concurrency`).
    pub fn gate(&self, bucket: u32) -> String {
        format!("{}:gate:{bucket}", self.prefix)
    }

    /// The pub/sub channel on which `release_gate.lua` announces that a bucket's gate is free
    /// (`<bucket> <ms>`), so waiters ask again then instead of polling. Not a key: it holds
    /// nothing, and losing a message only costs a waiter its old PTTL sleep.
    pub fn gate_events(&self) -> String {
        format!("{}:gate-events", self.prefix)
    }

    /// Remaining session starts (from `/gateway/bot`), expiring at Discord's `reset_after`.
    pub fn budget(&self) -> String {
        format!("{}:budget", self.prefix)
    }

    /// The period [`Keys::budget`] belongs to (HASH): Discord's last word on it (`remaining`),
    /// the period's end (`resetAt`, server ms), and the gates granted from it (gate key →
    /// owner), so the count never rises above what Discord said and a refund returns only into
    /// its own period.
    pub fn budget_period(&self) -> String {
        format!("{}:budget-period", self.prefix)
    }

    /// Saved session of one shard of a layout, for the next pod (custody) and crash recovery.
    pub fn session(&self, total: u32, shard: u32) -> String {
        format!("{}:session:{total}:{shard}", self.prefix)
    }

    /// Which pod owns the live session of one shard of a layout.
    pub fn lease(&self, total: u32, shard: u32) -> String {
        format!("{}:lease:{total}:{shard}", self.prefix)
    }

    /// Shard state for the operator's status summary.
    pub fn status(&self, total: u32, shard: u32) -> String {
        format!("{}:status:{total}:{shard}", self.prefix)
    }

    /// The waiting line of one bucket (ZSET of shard ids): lower shard ids identify first.
    pub fn queue(&self, bucket: u32) -> String {
        format!("{}:queue:{bucket}", self.prefix)
    }

    /// When each waiter of one bucket last asked (HASH shard id → ms), to drop departed waiters.
    pub fn seen(&self, bucket: u32) -> String {
        format!("{}:seen:{bucket}", self.prefix)
    }

    /// The `max_concurrency` (bucket map) of the last granted gate, kept for `connect_bound`
    /// after each grant: `take_gate.lua` refuses callers with another map meanwhile, so two
    /// bucket maps are never live at once.
    pub fn max_concurrency(&self) -> String {
        format!("{}:max-concurrency", self.prefix)
    }

    /// A shard of a layout closed for good by the gateway (4004, 4010–4014): the reason, kept for
    /// the budget period. Checked before every Identify, so a restarted pod does not spend a
    /// session start on a shard Discord already refused; deleted by the operator when the
    /// ShardSet changes (a new token, intents or shard count).
    pub fn fatal(&self, total: u32, shard: u32) -> String {
        format!("{}:fatal:{total}:{shard}", self.prefix)
    }

    /// How many Identifies of one shard of a layout in a row led to no session lasting a minute,
    /// counted across processes (the worker's Identify-loop guard): a pod that crashes after
    /// READY and before its first checkpoint, restarted again and again, stops at the guard's
    /// limit instead of identifying on every restart. Deleted when a session lasts, or when the
    /// shard is marked closed for good ([`Keys::fatal`]).
    pub fn identify_streak(&self, total: u32, shard: u32) -> String {
        format!("{}:identify-streak:{total}:{shard}", self.prefix)
    }

    /// The roles of the layouts ([`LayoutRoles`] as JSON): which layout acts on events.
    pub fn active_layout(&self) -> String {
        format!("{}:active-layout", self.prefix)
    }

    /// A claim on one event during a hand-over (`docs/resharding.md`); `event_key` is the 32 hex
    /// digits of [`crate::roles::ClaimKey`].
    pub fn claim(&self, event_key: &str) -> String {
        format!("{}:claim:{event_key}", self.prefix)
    }

    /// The ShardSet that runs the bot (`<namespace>/<name>`), claimed by the operator before it
    /// creates pods: a second ShardSet for the same bot is refused (`DuplicateBot`) instead of
    /// sharing the first one's gates and sessions and wiping them when it is deleted.
    pub fn owner(&self) -> String {
        format!("{}:owner", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every key of one layout kind, e.g. `pattern("session")`.
    pub fn pattern(&self, kind: &str) -> String {
        format!("{}:{kind}:*", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new(42);
        for key in [
            keys.epoch(),
            keys.gate(3),
            keys.budget(),
            keys.budget_period(),
            keys.session(16, 5),
            keys.lease(16, 5),
            keys.status(16, 5),
            keys.active_layout(),
            keys.queue(3),
            keys.seen(3),
            keys.max_concurrency(),
            keys.claim("00ff"),
            keys.fatal(16, 5),
            keys.identify_streak(16, 5),
        ] {
            assert!(key.starts_with("shardset:{42}:"), "{key}");
        }
        assert_eq!(keys.gate(3), "shardset:{42}:gate:3");
        assert_eq!(keys.session(16, 5), "shardset:{42}:session:16:5");
        assert_eq!(keys.pattern("lease"), "shardset:{42}:lease:*");
        assert_eq!(keys.fatal(16, 5), "shardset:{42}:fatal:16:5");
        assert_eq!(keys.pattern("fatal"), "shardset:{42}:fatal:*");
        assert_eq!(
            keys.identify_streak(16, 5),
            "shardset:{42}:identify-streak:16:5"
        );
    }

    #[test]
    fn bucket_is_shard_modulo_concurrency() {
        assert_eq!(bucket(0, 16), 0);
        assert_eq!(bucket(17, 16), 1);
        assert_eq!(bucket(5, 1), 0);
        // A zero concurrency is treated as one rather than dividing by zero.
        assert_eq!(bucket(5, 0), 0);
    }
}
