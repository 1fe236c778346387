//! The Redis CA bundle in a worker pod: the key `spec.redis.tls.caSecretRef` names, mounted
//! read-only from its Secret (that key alone, as [`FILE_NAME`]) at [`MOUNT_PATH`], and
//! `REDIS_CA_FILE` pointing at it. The operator reads the same key for its own connection
//! (`reconcile::dereference`).

use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use shardset_contract::env;

use crate::crd::RedisSpec;

/// The volume's name in the pod.
pub const VOLUME_NAME: &str = "redis-ca";
/// Where the volume is mounted in the worker container.
pub const MOUNT_PATH: &str = "/etc/shardset/redis-ca";
/// The file the Secret's key becomes.
pub const FILE_NAME: &str = "ca.crt";

/// The volume, its mount and the env variable, when the ShardSet names a CA bundle.
pub fn pod_parts(redis: &RedisSpec) -> Option<(Volume, VolumeMount, EnvVar)> {
    let ca = &redis.tls.as_ref()?.ca_secret_ref;
    let volume = Volume {
        name: VOLUME_NAME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ca.name.clone()),
            items: Some(vec![KeyToPath {
                key: ca.key.clone(),
                path: FILE_NAME.into(),
                mode: None,
            }]),
            // World-readable is fine for a CA certificate (the worker runs as a non-root uid).
            default_mode: Some(0o444),
            optional: Some(false),
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: VOLUME_NAME.into(),
        mount_path: MOUNT_PATH.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let var = EnvVar {
        name: env::REDIS_CA_FILE.into(),
        value: Some(format!("{MOUNT_PATH}/{FILE_NAME}")),
        value_from: None,
    };
    Some((volume, mount, var))
}
