//! The bot's fatal markers (`P:fatal:<total>:<shard>`: a shard Discord closed for good, which no
//! worker retries) and what they were written under: a digest of the token and the intents. A
//! new token or new intents clear them, so those shards identify once more; the same digest
//! goes into the pods' spec hash, so a new token also rolls the pods.

use kube::runtime::events::EventType;
use shardset_contract::token::Token;
use tracing::{info, warn};

use crate::context::Context;
use crate::crd::ShardSet;
use crate::redis_state::RedisTarget;

/// What the fatal markers were written under: a digest of the token and the intents (64 bits
/// of xxh3: stable across builds, and nothing of the token can be read back from it).
pub fn fatal_basis(token: &Token, intents: u64) -> String {
    let mut bytes = token.expose().as_bytes().to_vec();
    bytes.extend_from_slice(&intents.to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// Deletes the bot's fatal markers when the token or the intents changed since they were
/// written (a Normal Event says how many); failures only log: the markers also expire by
/// themselves.
pub async fn clear_on_new_basis(
    ctx: &Context,
    ss: &ShardSet,
    app_id: u64,
    token: &Token,
    redis: RedisTarget<'_>,
) {
    let basis = fatal_basis(token, ss.spec.intents);
    match ctx
        .redis
        .clear_fatal_on_new_basis(redis, app_id, &basis)
        .await
    {
        Ok(0) => {}
        Ok(cleared) => {
            info!(cleared, "token or intents changed: fatal markers cleared");
            ctx.publish(
                ss,
                EventType::Normal,
                "FatalMarkersCleared",
                "Reconcile",
                format!(
                    "the token or the intents changed: {cleared} shards closed for good by Discord will identify once more"
                ),
            )
            .await;
        }
        Err(error) => warn!(%error, "cannot check the fatal markers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fatal_basis_follows_token_and_intents_and_hides_the_token() {
        let a = fatal_basis(&Token::new("a.b.c"), 513);
        assert_eq!(a, fatal_basis(&Token::new("a.b.c"), 513), "stable");
        assert_ne!(a, fatal_basis(&Token::new("a.b.d"), 513));
        assert_ne!(a, fatal_basis(&Token::new("a.b.c"), 1));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("a.b.c"));
    }
}
