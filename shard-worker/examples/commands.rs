//! A bot that talks back to the gateway through the worker's command handle: its presence on
//! each shard once the shard is ready, and, for each guild it gets, the members whose username
//! starts with "a", asked for on the shard that holds the guild.

use std::sync::Arc;

use shard_worker::command::{Activity, Commands, MemberRequest, Presence, Status};
use shard_worker::handler::{Dispatch, Handler};
use shard_worker::worker::{Builder, shutdown_on_signal};

struct MyBot {
    commands: Commands,
}

impl Handler for MyBot {
    async fn dispatch(&self, d: Dispatch<'_>) {
        match d.event {
            "READY" => {
                // Inside the shard's own dispatch a command is queued (the shard sends it once
                // the dispatch returns); anywhere else the call returns once it was sent.
                let presence = Presence::new(Status::Online).activity(Activity::new(3, "shards"));
                if let Err(e) = self.commands.update_presence(d.shard, &presence).await {
                    eprintln!("presence: {e}");
                }
            }
            "GUILD_CREATE" if d.act().await => {
                let Some(guild) = d.guild_id() else { return };
                // The answer comes on this shard after this dispatch: ask from a task.
                let (commands, shard) = (self.commands.clone(), d.shard);
                tokio::spawn(async move {
                    let request = MemberRequest::query(guild, "a", 100);
                    match commands.request_guild_members(shard, request).await {
                        Ok(found) => println!("guild {guild}: {} members", found.members.len()),
                        // E.g. RateLimited { retry_after, .. }, NotLive, NoAnswer.
                        Err(e) => eprintln!("guild {guild}: {e} ({})", e.metric_label()),
                    }
                });
            }
            _ => {}
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let worker = Builder::from_env()?;
    // The handle sends on this worker's shards; clone it into the handler and any task.
    let bot = Arc::new(MyBot {
        commands: worker.commands(),
    });
    let outcome = worker.run(bot, shutdown_on_signal()).await?;
    anyhow::ensure!(outcome.panicked.is_empty(), "the handler panicked");
    Ok(())
}
