//! How far behind one shard runs, without I/O: whether it keeps up now, and how many times it
//! fell behind (its **lapses**), as its status record reports them to the operator
//! (`docs/resharding.md`, "What bounds W").
//!
//! The hand-over's argument needs the two layouts to handle each event less than `W` apart. A
//! shard cannot promise that while it does not receive (reconnecting, resuming: what it misses
//! arrives later, replayed), nor while its handler runs late. So a shard **keeps up** while it is
//! READY and hands its dispatches to the handler in time: the last one returned less than the
//! lag bound (`W / 2`, [`shardset_contract::handover_lag_bound_ms`]) after it arrived (or after
//! it was created, for events that carry their creation time), none has been in the handler
//! longer than that, or the shard had nothing to handle. Each change from keeping up to behind
//! is a lapse, counted: the operator, which reads the records a few times a second, then sees a
//! lapse even when it missed it.

/// One shard's pace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pace {
    /// READY or RESUMED: dispatches flow.
    live: bool,
    /// The worst lag (ms) since the shard began handling late; `None` while it is in time.
    late_ms: Option<u64>,
    lapses: u64,
}

impl Pace {
    /// Not live yet (a shard starts connecting), in time, no lapse.
    pub fn new() -> Self {
        Self::default()
    }

    /// READY and in time.
    pub fn keeping_up(&self) -> bool {
        self.live && self.late_ms.is_none()
    }

    /// Times the shard went from keeping up to behind.
    pub fn lapses(&self) -> u64 {
        self.lapses
    }

    /// The worst lag since the shard began handling late (the status record's `behindMs`).
    pub fn late_ms(&self) -> Option<u64> {
        self.late_ms
    }

    /// The shard is READY (`true`) or not. True when [`Pace::keeping_up`] changed.
    pub fn set_live(&mut self, live: bool) -> bool {
        self.change(|p| p.live = live)
    }

    /// A dispatch returned from the handler `lag_ms` after it arrived (or was created). True when
    /// [`Pace::keeping_up`] changed.
    pub fn handled(&mut self, lag_ms: u64, bound_ms: u64) -> bool {
        self.change(|p| {
            p.late_ms = (lag_ms >= bound_ms).then(|| p.late_ms.map_or(lag_ms, |w| w.max(lag_ms)));
        })
    }

    /// A dispatch has been in the handler for `busy_ms` (seen from outside the shard's task,
    /// which waits on it): late once that reaches the bound. True when [`Pace::keeping_up`]
    /// changed.
    pub fn busy(&mut self, busy_ms: u64, bound_ms: u64) -> bool {
        if busy_ms < bound_ms {
            return false;
        }
        self.change(|p| p.late_ms = Some(p.late_ms.map_or(busy_ms, |w| w.max(busy_ms))))
    }

    /// Nothing was handled or in the handler for a while: nothing is waiting (the shard reads the
    /// next frame as soon as the handler returns), so it is in time again. True when
    /// [`Pace::keeping_up`] changed.
    pub fn idle(&mut self) -> bool {
        self.change(|p| p.late_ms = None)
    }

    fn change(&mut self, apply: impl FnOnce(&mut Self)) -> bool {
        let before = self.keeping_up();
        apply(self);
        let after = self.keeping_up();
        if before && !after {
            self.lapses += 1;
        }
        before != after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 5_000;

    fn live() -> Pace {
        let mut pace = Pace::new();
        assert!(pace.set_live(true));
        pace
    }

    #[test]
    fn a_shard_starts_behind_without_a_lapse_and_keeps_up_once_ready() {
        let mut pace = Pace::new();
        assert!(!pace.keeping_up(), "not READY yet");
        assert!(
            !pace.handled(10, BOUND),
            "READY's own dispatch changes nothing"
        );
        assert!(pace.set_live(true));
        assert!(pace.keeping_up());
        assert_eq!(pace.lapses(), 0, "starting is not falling behind");
    }

    #[test]
    fn every_reconnect_is_a_lapse_however_short() {
        let mut pace = live();
        assert!(pace.set_live(false));
        assert!(!pace.keeping_up());
        assert_eq!(pace.lapses(), 1);
        assert!(pace.set_live(true));
        assert!(pace.set_live(false));
        assert!(!pace.set_live(false), "no change, no second lapse");
        assert_eq!(pace.lapses(), 2);
    }

    #[test]
    fn a_late_dispatch_is_a_lapse_until_one_is_in_time() {
        let mut pace = live();
        assert!(!pace.handled(BOUND - 1, BOUND));
        assert!(pace.handled(BOUND, BOUND), "at the bound: late");
        assert_eq!((pace.lapses(), pace.late_ms()), (1, Some(BOUND)));
        assert!(!pace.handled(9_000, BOUND), "still late: one lapse");
        assert!(!pace.handled(6_000, BOUND));
        assert_eq!(
            pace.late_ms(),
            Some(9_000),
            "the worst lag since it fell behind"
        );
        assert!(pace.handled(20, BOUND));
        assert!(pace.keeping_up());
        assert_eq!((pace.lapses(), pace.late_ms()), (1, None));
    }

    #[test]
    fn replays_handled_late_while_resuming_add_no_lapse_of_their_own() {
        let mut pace = live();
        pace.set_live(false);
        assert!(!pace.handled(12_000, BOUND), "a replayed message, 12 s old");
        assert_eq!(pace.lapses(), 1, "the reconnect was the lapse");
        // RESUMED itself is handled in time, then the shard is READY: it keeps up again.
        pace.handled(3, BOUND);
        assert!(pace.set_live(true));
        assert!(pace.keeping_up());
    }

    #[test]
    fn a_handler_stuck_on_one_dispatch_is_behind_before_it_returns() {
        let mut pace = live();
        assert!(!pace.busy(BOUND - 1, BOUND));
        assert!(pace.busy(BOUND + 500, BOUND));
        assert_eq!((pace.lapses(), pace.late_ms()), (1, Some(BOUND + 500)));
        // It returns at last, 8 s after its dispatch arrived: still late.
        assert!(!pace.handled(8_000, BOUND));
        assert_eq!(pace.late_ms(), Some(8_000));
        // Then nothing to handle: nothing is waiting either.
        assert!(pace.idle());
        assert!(pace.keeping_up());
        assert_eq!(pace.lapses(), 1);
    }
}
