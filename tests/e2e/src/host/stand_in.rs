//! The workers' Redis side, for scenarios whose pods run the probe image (which speaks no Redis):
//! every 200 ms, each Ready (not terminating) pod's shards are reported READY in their status
//! records, acknowledging the revision of the layout roles then in `P:active-layout`, as real
//! workers do. Without it a reshard waits forever for acknowledgements (`docs/resharding.md`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use redis_test_server::RedisServer;

use super::stage::fake_application_id;
use crate::TestNamespace;
use crate::background::Background;
use crate::shardsets::pod_range;

/// The stand-in, running until dropped.
pub struct WorkerStandIn {
    _task: Background,
}

impl WorkerStandIn {
    /// Starts reporting the Ready pods of `ns` in `redis`.
    pub async fn start(ns: &TestNamespace, redis: &RedisServer) -> anyhow::Result<Self> {
        use redis::AsyncCommands;
        use shardset_contract::{Keys, LayoutRoles, ShardState, ShardStatus};

        let mut conn = redis::Client::open(redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        let keys = Keys::new(fake_application_id());
        let pods = ns.api::<Pod>();
        let task = Background::spawn(async move {
            loop {
                let roles: Option<String> =
                    conn.get(keys.active_layout()).await.unwrap_or_default();
                let revision = roles
                    .and_then(|json| serde_json::from_str::<LayoutRoles>(&json).ok())
                    .map_or(0, |doc| doc.revision);
                let list = pods.list(&kube::api::ListParams::default()).await;
                for pod in list.map(|l| l.items).unwrap_or_default() {
                    if pod.metadata.deletion_timestamp.is_some()
                        || !crate::conditions::is_pod_ready(&pod)
                    {
                        continue;
                    }
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let Some((total, first, last)) = pod_range(&name) else {
                        continue;
                    };
                    for shard in first..=last {
                        let record = ShardStatus {
                            state: ShardState::Ready,
                            guilds: 0,
                            pod: name.clone(),
                            reason: None,
                            updated_at_ms: 1,
                            layout_revision: revision,
                            lapses: 0,
                            behind_ms: None,
                            bus_accepting: None,
                        };
                        let json = serde_json::to_string(&record).unwrap_or_default();
                        let _: Result<(), _> = conn.set(keys.status(total, shard), json).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Self { _task: task })
    }
}
