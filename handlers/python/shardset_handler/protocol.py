"""The names of the bus wire format (docs/bus-protocol.md): subjects, headers, message ids,
partitions, the ownership bucket's keys and the consumers. The Rust side keeps the same in
shardset_contract::bus; the tests hold both to the same examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Union

PROTOCOL_VERSION = 1
DEFAULT_PARTITIONS = 16
DEFAULT_DUPLICATE_WINDOW_S = 120.0
DEFAULT_LEASE_TTL_S = 10.0
DEFAULT_GROUP = "default"
CONSUMER_MAX_ACK_PENDING = 1
LAYOUT_KEY = "layout"

HEADER_EVENT = "Shardset-Event"
HEADER_SHARD = "Shardset-Shard"
HEADER_TOTAL = "Shardset-Total"
HEADER_SEQ = "Shardset-Seq"
HEADER_GUILD = "Shardset-Guild"
HEADER_MSG_ID = "Nats-Msg-Id"

META_PROTOCOL = "shardset.io/protocol"
META_PARTITIONS = "shardset.io/partitions"
META_SUBJECT_PREFIX = "shardset.io/subject-prefix"

GLOBAL = "global"


@dataclass(frozen=True)
class Partition:
    """A guild partition (``index`` 0..P-1) or the global one (``index`` None)."""

    index: Optional[int]

    @staticmethod
    def of(guild: Optional[int], partitions: int) -> "Partition":
        """``(guild >> 22) % P``, Discord's shard formula; no guild: the global partition."""
        if guild is None:
            return Partition(None)
        return Partition((guild >> 22) % max(partitions, 1))

    @staticmethod
    def all(partitions: int) -> Iterator["Partition"]:
        """Assignment order: 0..P-1, then the global partition."""
        for p in range(partitions):
            yield Partition(p)
        yield Partition(None)

    @staticmethod
    def parse(token: str) -> Optional["Partition"]:
        if token == GLOBAL:
            return Partition(None)
        return Partition(int(token)) if token.isdigit() else None

    def position(self, partitions: int) -> int:
        return partitions if self.index is None else self.index

    @property
    def is_global(self) -> bool:
        return self.index is None

    def __str__(self) -> str:
        return GLOBAL if self.index is None else str(self.index)

    def __lt__(self, other: "Partition") -> bool:  # global sorts last, as in Rust
        return (self.index is None, self.index or 0) < (other.index is None, other.index or 0)


def default_stream_name(namespace: str, shardset: str) -> str:
    return f"shardset-{namespace}-{shardset}".replace(".", "_")


def default_subject_prefix(namespace: str, shardset: str) -> str:
    return f"shardset.{namespace}.{shardset.replace('.', '_')}"


def event_subject(prefix: str, partition: Partition) -> str:
    return f"{prefix}.events.{partition}"


def events_filter(prefix: str) -> str:
    return f"{prefix}.events.>"


def command_subject(prefix: str, total: int, shard: int) -> str:
    return f"{prefix}.commands.{total}.{shard}"


def shard_of_guild(guild: int, total: int) -> int:
    return (guild >> 22) % max(total, 1)


def session_msg_id(session_id: str, seq: int) -> str:
    return f"s:{session_id}:{seq}"


def content_msg_id(claim_key_hex: str) -> str:
    return f"c:{claim_key_hex}"


def handlers_bucket(stream: str) -> str:
    return f"{stream}-handlers"


def member_key(group: str, replica: str) -> str:
    return f"{group}.members.{replica}"


def member_prefix(group: str) -> str:
    return f"{group}.members."


def owner_key(group: str, partition: Partition) -> str:
    return f"{group}.owner.{partition}"


def owner_prefix(group: str) -> str:
    return f"{group}.owner."


def consumer_name(stream: str, group: str, partition: Partition) -> str:
    if partition.is_global:
        return f"{stream}-{group}-global"
    return f"{stream}-{group}-p{partition.index}"


def valid_name(name: str) -> bool:
    return 1 <= len(name) <= 100 and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)


def stream_config(name: str, prefix: str, partitions: int, duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S):
    """The bot's stream as the publishing side creates it (see wire.rs)."""
    from nats.js import api

    return api.StreamConfig(
        name=name,
        subjects=[events_filter(prefix)],
        retention=api.RetentionPolicy.INTEREST,
        discard=api.DiscardPolicy.NEW,
        storage=api.StorageType.FILE,
        duplicate_window=duplicate_window_s,
        metadata={
            META_PROTOCOL: str(PROTOCOL_VERSION),
            META_SUBJECT_PREFIX: prefix,
            META_PARTITIONS: str(partitions),
        },
    )


def consumer_config(stream: str, prefix: str, group: str, partition: Partition, ack_wait_s: float):
    """A group's durable pull consumer of one partition (see wire.rs)."""
    from nats.js import api

    return api.ConsumerConfig(
        durable_name=consumer_name(stream, group, partition),
        filter_subject=event_subject(prefix, partition),
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_ack_pending=CONSUMER_MAX_ACK_PENDING,
        max_deliver=-1,
        replay_policy=api.ReplayPolicy.INSTANT,
    )


Number = Union[int, str]
