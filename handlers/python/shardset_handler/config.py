"""What a handler replica needs to know, from code or the environment (the same names as the Rust
library). The stream's layout is read from its metadata, not configured."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from . import protocol

NATS_URL = "NATS_URL"
NATS_USER = "NATS_USER"
NATS_PASSWORD = "NATS_PASSWORD"
NATS_TOKEN = "NATS_TOKEN"
SHARDSET_STREAM = "SHARDSET_STREAM"
SHARDSET_HANDLER_GROUP = "SHARDSET_HANDLER_GROUP"
SHARDSET_HANDLER_REPLICA = "SHARDSET_HANDLER_REPLICA"
SHARDSET_LEASE_TTL_MS = "SHARDSET_LEASE_TTL_MS"
SHARDSET_HANDLER_MAX_ATTEMPTS = "SHARDSET_HANDLER_MAX_ATTEMPTS"


class ConfigError(ValueError):
    pass


def generated_replica(base: Optional[str]) -> str:
    """<base>-<8 hex>: unique per process (a restarted pod never adopts its predecessor's leases)."""
    base = "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else "-" for c in (base or "handler"))[:80]
    return f"{base}-{secrets.token_hex(4)}"


@dataclass
class Config:
    nats_url: str
    stream: str
    user: Optional[str] = field(default=None, repr=False)
    password: Optional[str] = field(default=None, repr=False)
    token: Optional[str] = field(default=None, repr=False)
    group: str = protocol.DEFAULT_GROUP
    replica: str = field(default_factory=lambda: generated_replica(None))
    lease_ttl_s: float = protocol.DEFAULT_LEASE_TTL_S  # only when this replica creates the bucket
    max_attempts: int = 5
    retry_delay_s: float = 1.0
    fetch_expires_s: float = 1.0
    command_timeout_s: float = 10.0
    # How often an owned partition's backlog (pending, lag) is read for the metrics: two
    # JetStream API requests per partition each time (the Rust library's backlog_every).
    backlog_every_s: float = 5.0

    def __repr__(self) -> str:  # the URL may hold a password
        host = self.nats_url.rsplit("@", 1)[-1]
        return f"Config(nats={host!r}, stream={self.stream!r}, group={self.group!r}, replica={self.replica!r})"

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Config":
        env = os.environ if env is None else env
        get: Callable[[str], Optional[str]] = lambda k: env.get(k) or None  # noqa: E731
        url, stream = get(NATS_URL), get(SHARDSET_STREAM)
        if not url:
            raise ConfigError(f"{NATS_URL} is not set")
        if not stream:
            raise ConfigError(f"{SHARDSET_STREAM} is not set")
        config = cls(nats_url=url, stream=stream)
        user, password, token = get(NATS_USER), get(NATS_PASSWORD), get(NATS_TOKEN)
        if bool(user) != bool(password):
            raise ConfigError("NATS_USER and NATS_PASSWORD go together")
        config.user, config.password, config.token = user, password, token
        config.group = get(SHARDSET_HANDLER_GROUP) or protocol.DEFAULT_GROUP
        config.replica = get(SHARDSET_HANDLER_REPLICA) or generated_replica(get("POD_NAME") or get("HOSTNAME"))
        if get(SHARDSET_LEASE_TTL_MS):
            config.lease_ttl_s = int(get(SHARDSET_LEASE_TTL_MS)) / 1000
        if get(SHARDSET_HANDLER_MAX_ATTEMPTS):
            config.max_attempts = int(get(SHARDSET_HANDLER_MAX_ATTEMPTS))
        config.validate()
        return config

    def validate(self) -> None:
        if not protocol.valid_name(self.group):
            raise ConfigError(f"{SHARDSET_HANDLER_GROUP} is invalid: 1 to 100 of A-Z a-z 0-9 _ -")
        if not protocol.valid_name(self.replica):
            raise ConfigError(f"{SHARDSET_HANDLER_REPLICA} is invalid: 1 to 100 of A-Z a-z 0-9 _ -")
        if self.lease_ttl_s < 0.3:
            raise ConfigError(f"{SHARDSET_LEASE_TTL_MS} is invalid: at least 300 ms")
        if self.max_attempts < 1:
            raise ConfigError(f"{SHARDSET_HANDLER_MAX_ATTEMPTS} is invalid: at least 1")
