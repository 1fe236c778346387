//! Which synthetic messages the bot answered, and how often: the evidence that every event was
//! "acted on exactly once". Messages are remembered in id order (snowflakes grow with time), so
//! a reply finds its message by binary search and a period is a contiguous range.

use std::collections::VecDeque;

use crate::control::RepliesReport;
use crate::snowflake;

/// Synthetic messages and their reply counts.
#[derive(Debug)]
pub struct Replies {
    capacity: usize,
    messages: VecDeque<(u64, u32)>,
    to_unknown: u64,
    deduplicated: u64,
}

/// Ids listed per sample in a report.
const SAMPLE: usize = 20;

impl Replies {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            messages: VecDeque::new(),
            to_unknown: 0,
            deduplicated: 0,
        }
    }

    /// Remembers a synthetic message (ids arrive in increasing order).
    pub fn message(&mut self, id: u64) {
        if self.messages.back().is_some_and(|&(last, _)| last >= id) {
            // Out of order (two generators raced): insert in place to keep the order.
            let at = self.messages.partition_point(|&(m, _)| m < id);
            self.messages.insert(at, (id, 0));
        } else {
            self.messages.push_back((id, 0));
        }
        while self.messages.len() > self.capacity {
            self.messages.pop_front();
        }
    }

    /// Whether `id` is a remembered synthetic message.
    #[cfg(test)]
    pub fn knows(&self, id: u64) -> bool {
        self.find(id).is_some()
    }

    fn find(&self, id: u64) -> Option<usize> {
        let at = self.messages.partition_point(|&(m, _)| m < id);
        (self.messages.get(at).map(|&(m, _)| m) == Some(id)).then_some(at)
    }

    /// Counts a reply to `target`; `false` when the fake does not know the message.
    pub fn reply(&mut self, target: u64) -> bool {
        match self.find(target) {
            Some(at) => {
                self.messages[at].1 += 1;
                true
            }
            None => {
                self.to_unknown += 1;
                false
            }
        }
    }

    /// Counts a create answered with an earlier message of the same nonce: not a reply.
    pub fn deduplicated(&mut self) {
        self.deduplicated += 1;
    }

    /// The messages created in `[since_ms, until_ms)` and their replies.
    pub fn report(&self, since_ms: u64, until_ms: u64) -> RepliesReport {
        let lo = snowflake::first_of_ms(since_ms);
        let hi = snowflake::first_of_ms(until_ms);
        let start = self.messages.partition_point(|&(m, _)| m < lo);
        let end = self.messages.partition_point(|&(m, _)| m < hi);
        let mut report = RepliesReport {
            since_ms,
            until_ms,
            messages: 0,
            exactly_once: 0,
            none: 0,
            multiple: 0,
            replies: 0,
            replies_to_unknown: self.to_unknown,
            deduplicated: self.deduplicated,
            unanswered_sample: Vec::new(),
            multiple_sample: Vec::new(),
        };
        for &(id, count) in self.messages.range(start..end.max(start)) {
            report.messages += 1;
            report.replies += u64::from(count);
            match count {
                0 => {
                    report.none += 1;
                    if report.unanswered_sample.len() < SAMPLE {
                        report.unanswered_sample.push(id.to_string());
                    }
                }
                1 => report.exactly_once += 1,
                _ => {
                    report.multiple += 1;
                    if report.multiple_sample.len() < SAMPLE {
                        report.multiple_sample.push(id.to_string());
                    }
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snowflake::first_of_ms;

    #[test]
    fn counts_none_once_and_many_within_a_period() {
        let t = 1_764_000_000_000;
        let mut replies = Replies::new(100);
        let ids: Vec<u64> = (0..4).map(|i| first_of_ms(t + i * 10)).collect();
        for &id in &ids {
            replies.message(id);
        }
        assert!(replies.reply(ids[0]));
        assert!(replies.reply(ids[1]));
        assert!(replies.reply(ids[1]));
        assert!(!replies.reply(12345));
        let all = replies.report(t, t + 1_000);
        assert_eq!(
            (all.messages, all.exactly_once, all.multiple, all.none),
            (4, 1, 1, 2)
        );
        assert_eq!(all.replies, 3);
        assert_eq!(all.replies_to_unknown, 1);
        assert_eq!(all.multiple_sample, vec![ids[1].to_string()]);
        // The period [t+10, t+30) holds messages 1 and 2 only.
        let part = replies.report(t + 10, t + 30);
        assert_eq!((part.messages, part.multiple, part.none), (2, 1, 1));
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut replies = Replies::new(2);
        replies.message(1);
        replies.message(2);
        replies.message(3);
        assert!(!replies.knows(1));
        assert!(replies.knows(3));
        replies.message(2);
        assert!(replies.knows(2));
    }
}
