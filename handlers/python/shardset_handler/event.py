"""One event as a handler receives it, and the check of a message against the wire format
(docs/bus-protocol.md, "Events"). A message that fails the check is a BadMessage: reported and
terminated, never handed to the handler. No I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from . import protocol
from .protocol import Partition


class BadMessage(Exception):
    """Not an event of the protocol; ``label`` is a fixed metric label."""

    def __init__(self, label: str, message: str):
        super().__init__(message)
        self.label = label


@dataclass
class Head:
    name: str
    shard: int
    total: int
    seq: int
    guild: Optional[int]


@dataclass
class Event:
    name: str
    shard: int
    total: int
    seq: int
    guild: Optional[int]
    data: bytes  # the raw `d` JSON as Discord sent it
    partition: Partition
    stream_seq: int
    delivered: int
    commands: "object" = field(repr=False, default=None)

    @property
    def redelivered(self) -> bool:
        return self.delivered > 1

    def json(self):
        return json.loads(self.data)


def parse_head(headers: Optional[Mapping[str, str]], payload: bytes) -> Head:
    headers = headers or {}

    def required(name: str) -> str:
        value = headers.get(name)
        if not value:
            raise BadMessage("missing_header", f"header {name} is missing")
        return value

    def number(name: str, value: str) -> int:
        value = value.strip()
        if not value.isdigit():
            raise BadMessage("bad_number", f"header {name} is not a decimal number: {value[:32]!r}")
        return int(value)

    name = required(protocol.HEADER_EVENT)
    shard = number(protocol.HEADER_SHARD, required(protocol.HEADER_SHARD))
    total = number(protocol.HEADER_TOTAL, required(protocol.HEADER_TOTAL))
    seq = number(protocol.HEADER_SEQ, required(protocol.HEADER_SEQ))
    guild_header = headers.get(protocol.HEADER_GUILD)
    guild = number(protocol.HEADER_GUILD, guild_header) if guild_header else None
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("not_json", "the payload is not JSON") from None
    return Head(name=name, shard=shard, total=total, seq=seq, guild=guild)


Handler = Callable[[Event], "object"]  # async def handler(event) -> None; raise to retry
