//! What stops a ShardSet from being served as asked: each [`Problem`] is a `Degraded` condition
//! reason, and some also block pod creation.

/// Something the user (or the world) must fix. The variant is the condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The token Secret or its key is missing or empty. Blocks pod creation.
    TokenSecretMissing(String),
    /// Discord answered 401 to the token. Blocks pod creation.
    InvalidToken(String),
    /// The Redis password Secret or its key is missing. Blocks pod creation.
    RedisSecretMissing(String),
    /// `autoShards` is set but Discord has not told us a shard count yet. Blocks pod creation.
    ShardCountUnknown(String),
    /// Neither `spec.image` nor the operator's default worker image is set. Blocks pod creation.
    WorkerImageUnknown(String),
    /// Discord's REST API cannot be reached or answers errors.
    GatewayUnreachable(String),
    /// Discord rate limited us; we wait as told.
    DiscordRateLimited(String),
    /// The operator cannot read the workers' shard status from Redis.
    RedisUnreachable(String),
    /// A worker reports a shard closed for good (4004, 4010–4014).
    ShardFailed(String),
    /// Pods cannot start (image pull, crash loop, bad config).
    PodsFailing(String),
    /// `spec.gateway.apiUrl` (or a window below 5 s with it) names a host the operator was not
    /// installed to trust: the token is sent nowhere. Blocks pod creation.
    UntrustedApiUrl(String),
    /// Another ShardSet runs the same bot (same application id, same Redis). Blocks pod creation.
    DuplicateBot(String),
    /// The pods' PodDisruptionBudget cannot be kept (RBAC, a foreign object under its name):
    /// drains are not paced.
    DisruptionBudgetFailed(String),
    /// The worker pods' NetworkPolicy cannot be kept (RBAC, a foreign object under its name):
    /// their egress is not limited.
    NetworkPolicyFailed(String),
}

impl Problem {
    /// The condition reason (and Event reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TokenSecretMissing(_) => "TokenSecretMissing",
            Self::InvalidToken(_) => "InvalidToken",
            Self::RedisSecretMissing(_) => "RedisSecretMissing",
            Self::ShardCountUnknown(_) => "ShardCountUnknown",
            Self::WorkerImageUnknown(_) => "WorkerImageUnknown",
            Self::GatewayUnreachable(_) => "GatewayUnreachable",
            Self::DiscordRateLimited(_) => "DiscordRateLimited",
            Self::RedisUnreachable(_) => "RedisUnreachable",
            Self::ShardFailed(_) => "ShardFailed",
            Self::PodsFailing(_) => "PodsFailing",
            Self::UntrustedApiUrl(_) => "UntrustedApiUrl",
            Self::DuplicateBot(_) => "DuplicateBot",
            Self::DisruptionBudgetFailed(_) => "DisruptionBudgetFailed",
            Self::NetworkPolicyFailed(_) => "NetworkPolicyFailed",
        }
    }

    /// What is wrong and what to do, for a human.
    pub fn message(&self) -> &str {
        match self {
            Self::TokenSecretMissing(m)
            | Self::InvalidToken(m)
            | Self::RedisSecretMissing(m)
            | Self::ShardCountUnknown(m)
            | Self::WorkerImageUnknown(m)
            | Self::GatewayUnreachable(m)
            | Self::DiscordRateLimited(m)
            | Self::RedisUnreachable(m)
            | Self::ShardFailed(m)
            | Self::PodsFailing(m)
            | Self::UntrustedApiUrl(m)
            | Self::DuplicateBot(m)
            | Self::DisruptionBudgetFailed(m)
            | Self::NetworkPolicyFailed(m) => m,
        }
    }

    /// True when no pod may be created while this holds: pods would crash-loop and could burn the
    /// daily Identify budget.
    pub fn blocks_pods(&self) -> bool {
        matches!(
            self,
            Self::TokenSecretMissing(_)
                | Self::InvalidToken(_)
                | Self::RedisSecretMissing(_)
                | Self::ShardCountUnknown(_)
                | Self::UntrustedApiUrl(_)
                | Self::DuplicateBot(_)
                | Self::WorkerImageUnknown(_)
        )
    }
}
