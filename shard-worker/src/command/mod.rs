//! Gateway commands from the bot: a handle ([`Commands`]) that sends, on a chosen shard of the
//! worker, op 3 Presence Update, op 4 Voice State Update, op 8 Request Guild Members (its
//! GUILD_MEMBERS_CHUNK dispatches gathered into one answer) and opcodes the worker does not model
//! (31, 43, ...) as JSON.
//!
//! - `handle`: the handle, its waits ([`CommandConfig`]), the rule for calls from inside a
//!   shard's own dispatch.
//! - `inbox`: the shard's end of the channel: one order at a time, sent when the session is live
//!   and the send limit has room, refused when it waited too long for a live session.
//! - `error`: why a command failed, and whether it reached Discord.
//!
//! The payloads and their checks (4,096 bytes, op 8's rules) are [`crate::gateway::bot_commands`];
//! the gathering of chunks [`crate::gateway::members`]; the shard's side of the loop
//! `shard/commanding.rs`. Every command goes through the connection's send limiter (120 per
//! window, room always kept for heartbeats).

mod error;
mod handle;
mod inbox;

pub use error::CommandError;
pub(crate) use handle::within_dispatch;
pub use handle::{CommandConfig, Commands, QUEUE_PER_SHARD};
pub use inbox::{Inbox, Inboxes};
pub(crate) use inbox::{Next, Order, refuse};

pub use crate::gateway::bot_commands::{
    Activity, BotCommand, EncodeError, MemberRequest, Presence, Status, VoiceState,
};
pub use crate::gateway::members::{Members, RateLimited};
