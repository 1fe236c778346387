//! A guild cache filled from dispatches: id, name, member count and availability of each guild,
//! and the shard it is on (the `guilds` of each shard's status record).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{guild_id, opt_snowflake};

/// What the cache knows of a guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedGuild {
    pub shard: u32,
    pub name: Option<String>,
    pub member_count: Option<u64>,
    pub available: bool,
}

/// Guilds by id.
#[derive(Debug, Default)]
pub struct GuildCache {
    guilds: Mutex<HashMap<u64, CachedGuild>>,
}

#[derive(Deserialize)]
struct GuildFields {
    #[serde(default, deserialize_with = "opt_snowflake")]
    id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    member_count: Option<u64>,
    #[serde(default)]
    unavailable: Option<bool>,
}

#[derive(Deserialize)]
struct ReadyGuilds {
    #[serde(default)]
    guilds: Vec<GuildFields>,
}

impl GuildCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CachedGuild>> {
        self.guilds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one dispatch; returns false when the event does not concern the cache.
    pub fn apply(&self, shard: u32, event: &str, data: &str) -> bool {
        match event {
            "READY" => {
                let Ok(ready) = serde_json::from_str::<ReadyGuilds>(data) else {
                    return false;
                };
                let mut guilds = self.lock();
                guilds.retain(|_, g| g.shard != shard);
                for g in ready.guilds.into_iter().filter_map(|g| g.id) {
                    guilds.insert(
                        g,
                        CachedGuild {
                            shard,
                            name: None,
                            member_count: None,
                            available: false,
                        },
                    );
                }
            }
            "GUILD_CREATE" | "GUILD_UPDATE" => {
                let Ok(fields) = serde_json::from_str::<GuildFields>(data) else {
                    return false;
                };
                let Some(id) = fields.id else { return false };
                let mut guilds = self.lock();
                let entry = guilds.entry(id).or_insert(CachedGuild {
                    shard,
                    name: None,
                    member_count: None,
                    available: true,
                });
                entry.shard = shard;
                entry.available = !fields.unavailable.unwrap_or(false);
                if fields.name.is_some() {
                    entry.name = fields.name;
                }
                if fields.member_count.is_some() {
                    entry.member_count = fields.member_count;
                }
            }
            "GUILD_DELETE" => {
                let Ok(fields) = serde_json::from_str::<GuildFields>(data) else {
                    return false;
                };
                let Some(id) = fields.id else { return false };
                let mut guilds = self.lock();
                if fields.unavailable.unwrap_or(false) {
                    if let Some(g) = guilds.get_mut(&id) {
                        g.available = false;
                    }
                } else {
                    guilds.remove(&id);
                }
            }
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_REMOVE" => {
                let Some(id) = guild_id(event, data) else {
                    return false;
                };
                if let Some(count) = self
                    .lock()
                    .get_mut(&id)
                    .and_then(|g| g.member_count.as_mut())
                {
                    if event == "GUILD_MEMBER_ADD" {
                        *count += 1;
                    } else {
                        *count = count.saturating_sub(1);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    pub fn get(&self, id: u64) -> Option<CachedGuild> {
        self.lock().get(&id).cloned()
    }

    /// Guilds on `shard`.
    pub fn count_on(&self, shard: u32) -> u32 {
        self.lock().values().filter(|g| g.shard == shard).count() as u32
    }

    /// Every guild.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &str {
        s
    }

    #[test]
    fn caches_guilds_through_their_lifecycle() {
        let cache = GuildCache::default();
        cache.apply(
            1,
            "READY",
            raw(r#"{"guilds":[{"id":"10","unavailable":true},{"id":"11","unavailable":true}]}"#),
        );
        assert_eq!(cache.count_on(1), 2);
        assert!(!cache.get(10).expect("cached").available);
        cache.apply(
            1,
            "GUILD_CREATE",
            raw(r#"{"id":"10","name":"ten","member_count":5}"#),
        );
        let g = cache.get(10).expect("cached");
        assert_eq!(
            (g.name.as_deref(), g.member_count, g.available),
            (Some("ten"), Some(5), true)
        );
        cache.apply(1, "GUILD_MEMBER_ADD", raw(r#"{"guild_id":"10"}"#));
        assert_eq!(cache.get(10).and_then(|g| g.member_count), Some(6));
        cache.apply(1, "GUILD_DELETE", raw(r#"{"id":"10","unavailable":true}"#));
        assert!(!cache.get(10).expect("kept").available);
        cache.apply(1, "GUILD_DELETE", raw(r#"{"id":"10"}"#));
        assert!(cache.get(10).is_none());
        assert!(!cache.apply(1, "MESSAGE_CREATE", raw("{}")));
    }
}
