//! Removing many keys without blocking Redis: SCAN, then UNLINK a batch at a time.

use redis::AsyncCommands;
use shardset_contract::redis_link::RedisLink;

/// Deletes every key matching `pattern` (SCAN, then UNLINK a batch at a time, so a large
/// keyspace never blocks Redis), except `keep`; returns how many went.
pub(super) async fn unlink_matching(
    conn: &mut RedisLink,
    pattern: &str,
    keep: Option<&str>,
) -> redis::RedisResult<u64> {
    let mut deleted: u64 = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        let batch: Vec<String> = batch
            .into_iter()
            .filter(|k| Some(k.as_str()) != keep)
            .collect();
        if !batch.is_empty() {
            let n: u64 = conn.unlink(batch).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
