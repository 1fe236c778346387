//! The commands of an authenticated client: op 3 Presence Update, op 4 Voice State Update,
//! op 8 Request Guild Members, and the opcodes the fake does not model (31, 43). Each was
//! already counted against the send limit and the size limit (`inbound.rs`). Before Identify
//! or Resume they close 4003; a `d` that breaks its opcode's shape closes 4001 (`commands.rs`).
//! What is taken is recorded in `/control/commands`; op 8's answers are queued on the session
//! and written by the drain like any dispatch.

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Connection, End};
use crate::commands::{self, ClientCommand};
use crate::control::{CommandOutcome, CommandRecord, Rule};
use crate::rules::{CloseCode, Micros, US_PER_MS};
use crate::state::member_requests::MembersAnswer;

/// What the fake did with a command, for its record.
struct Taken {
    outcome: CommandOutcome,
    chunks: u32,
    retry_after: Option<f64>,
}

impl Taken {
    fn accepted() -> Self {
        Self {
            outcome: CommandOutcome::Accepted,
            chunks: 0,
            retry_after: None,
        }
    }

    fn ignored() -> Self {
        Self {
            outcome: CommandOutcome::Ignored,
            ..Self::accepted()
        }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) async fn client_command(
        &mut self,
        command: ClientCommand,
        d: &Value,
        at: Micros,
    ) -> Option<End> {
        let op = command.op();
        let Some(session) = self.session.clone() else {
            let details = format!("op {op} before Identify");
            return Some(
                self.breach(Rule::NotAuthenticated, CloseCode::NotAuthenticated, details)
                    .await,
            );
        };
        let shard = [session.shard, session.num_shards];
        let taken = match command {
            ClientCommand::PresenceUpdate => {
                commands::presence_update(d).map(|()| Taken::accepted())
            }
            ClientCommand::VoiceStateUpdate => commands::voice_state_update(d).map(|guild| {
                match commands::guild_on_shard(guild, self.fake.config.guilds, shard) {
                    Ok(_) => Taken::accepted(),
                    Err(details) => {
                        self.violation(Rule::GuildNotOnShard, format!("op 4: {details}"));
                        Taken::ignored()
                    }
                }
            }),
            ClientCommand::RequestGuildMembers => {
                commands::request_guild_members(d).map(|request| {
                    match self.fake.request_guild_members(&session, &request, at) {
                        MembersAnswer::Chunks(chunks) => Taken {
                            outcome: CommandOutcome::Answered,
                            chunks,
                            retry_after: None,
                        },
                        MembersAnswer::RateLimited { retry_after } => {
                            self.violation(
                                Rule::RequestAllMembersTooFast,
                                format!(
                                    "all members of guild {} asked for again {} ms before its \
                                 {} ms window ended: RATE_LIMITED",
                                    request.guild_id,
                                    retry_after.div_ceil(US_PER_MS),
                                    self.fake.config.member_request_window_ms
                                ),
                            );
                            Taken {
                                outcome: CommandOutcome::RateLimited,
                                chunks: 0,
                                // As the dispatch says it: in seconds, rounded up to the ms.
                                retry_after: Some(retry_after.div_ceil(US_PER_MS) as f64 / 1e3),
                            }
                        }
                        MembersAnswer::Ignored { rule, details } => {
                            self.violation(rule, details);
                            Taken::ignored()
                        }
                    }
                })
            }
            ClientCommand::RequestSoundboardSounds | ClientCommand::RequestChannelInfo => {
                Ok(Taken::accepted())
            }
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(details) => {
                let details = format!("op {op}: {details}");
                return Some(
                    self.breach(Rule::InvalidPayload, CloseCode::UnknownOpcode, details)
                        .await,
                );
            }
        };
        self.fake.record_command(CommandRecord {
            at_ms: at / US_PER_MS,
            at_us: at,
            connection: self.id,
            session_id: session.id.clone(),
            shard: session.shard,
            num_shards: session.num_shards,
            op,
            d: d.clone(),
            outcome: taken.outcome,
            chunks: taken.chunks,
            retry_after: taken.retry_after,
        });
        None
    }
}
