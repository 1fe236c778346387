//! Fault injection: a fault of the control API reaches every connection its target selects
//! (all of them when the target is empty), through each connection's command queue.

use std::sync::Arc;

use super::{Command, Fake, lock};
use crate::control::{FaultRequest, Target};
use crate::session::Session;

impl Fake {
    /// Sends a fault to every matching connection; returns how many.
    pub fn inject(&self, request: &FaultRequest) -> u32 {
        let matches = |target: &Target, session: Option<&Arc<Session>>| {
            let any = target.session_id.is_none()
                && target.shard.is_none()
                && target.num_shards.is_none();
            any || session.is_some_and(|s| {
                target.session_id.as_ref().is_none_or(|id| *id == s.id)
                    && target.shard.is_none_or(|shard| shard == s.shard)
                    && target.num_shards.is_none_or(|n| n == s.num_shards)
            })
        };
        let mut affected = 0;
        for handle in lock(&self.connections).values() {
            if matches(&request.target, handle.session.as_ref())
                && handle
                    .commands
                    .send(Command::Fault(request.fault.clone()))
                    .is_ok()
            {
                affected += 1;
            }
        }
        affected
    }
}
