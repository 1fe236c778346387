//! The control API (`/control/...`): how tests and users read what the fake saw (identifies,
//! violations, sessions and their history, overlapping sessions, commands, late heartbeats,
//! counters, replies) and steer it (faults,
//! load, messages, dispatches, budget, reset). `records.rs` holds its public JSON records,
//! re-exported here; `api.rs` its routes, which the server mounts; `gaps.rs` the bucket gaps
//! that benchmarks report.

pub(crate) mod api;
mod gaps;
mod records;

pub use self::gaps::{bucket_gaps_ms, quantile, spread, timed_bucket_gaps};

pub use self::records::{
    BudgetInfo, BudgetUpdate, CommandOutcome, CommandRecord, Counters, DispatchRequest,
    DispatchResult, Fault, FaultRequest, FaultResult, GuildList, IdentifyOutcome, IdentifyRecord,
    LateHeartbeat, LoadSettings, LoadStatus, MessageRequest, MessagesCreated, RecordFilter,
    RepliesReport, Rule, SessionEnd, SessionHistory, SessionInfo, SessionOverlap, Target,
    Violation, opt_snowflake,
};
