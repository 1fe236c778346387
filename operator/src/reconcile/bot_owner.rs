//! One ShardSet per bot (issue 11, item 14). The bot's Redis keys (`shardset:{<app_id>}:*`: its
//! gates, budget, sessions) belong to the bot, not to a ShardSet: two ShardSets for one bot would
//! identify the same shards twice, share one budget, and the deletion of either would wipe the
//! other's keys. So before pods are created the ShardSet claims the bot in its Redis
//! (`Keys::owner`, `<namespace>/<name>`); a second one gets `DuplicateBot` and no pods, and its
//! deletion leaves the keys alone. An owner whose ShardSet no longer exists (its cleanup never
//! reached Redis) is taken over.

use kube::api::Api;
use tracing::warn;

use crate::context::Context;
use crate::crd::ShardSet;
use crate::redis_state::{BotOwner, RedisTarget};
use crate::status::Problem;

/// Claims bot `app_id` for the ShardSet `key` (`<namespace>/<name>`): `None` when it owns it (or
/// Redis cannot say: that is reported on its own), else `DuplicateBot` naming the owner.
pub async fn claim(
    ctx: &Context,
    key: &str,
    app_id: u64,
    redis: RedisTarget<'_>,
) -> Option<Problem> {
    let owner = match ctx.redis.claim_bot(redis, app_id, key, None).await {
        Ok(BotOwner::Ours) => return None,
        Ok(BotOwner::Other(owner)) => owner,
        Err(error) => {
            warn!(%error, "cannot claim the bot in Redis");
            return None;
        }
    };
    if !owner_exists(ctx, &owner).await {
        match ctx.redis.claim_bot(redis, app_id, key, Some(&owner)).await {
            Ok(BotOwner::Ours) => return None,
            Ok(BotOwner::Other(_)) | Err(_) => {}
        }
    }
    Some(Problem::DuplicateBot(duplicate_message(app_id, &owner)))
}

/// Whether the ShardSet `<namespace>/<name>` exists; when the API cannot say (an error, a
/// namespace this operator may not read), it is taken to exist.
async fn owner_exists(ctx: &Context, owner: &str) -> bool {
    let Some((namespace, name)) = owner.split_once('/') else {
        return true;
    };
    let api: Api<ShardSet> = Api::namespaced(ctx.client.clone(), namespace);
    !matches!(api.get_opt(name).await, Ok(None))
}

/// The `DuplicateBot` condition's message.
pub fn duplicate_message(app_id: u64, owner: &str) -> String {
    format!(
        "the bot (application {app_id}) is already run by ShardSet {owner}: two ShardSets for one bot would identify its shards twice and share one session budget, so this one creates no pods and its deletion leaves the bot's Redis keys alone. Delete one of the two, or scale the other"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_owner_and_what_to_do() {
        let m = duplicate_message(42, "bots/first");
        assert!(
            m.contains("application 42") && m.contains("ShardSet bots/first"),
            "{m}"
        );
        assert!(m.contains("creates no pods"), "{m}");
    }
}
