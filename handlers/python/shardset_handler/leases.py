"""A replica's records in the ownership bucket (docs/bus-protocol.md, "Partition ownership"):
its member key, and the lease of each partition it consumes, created only when absent, renewed
and released only at the revision it last wrote. Expiry is the bucket's max_age."""

from __future__ import annotations

import json
import time
from typing import List, Optional

import nats.js.errors

from . import protocol
from .protocol import Partition


class Leases:
    def __init__(self, kv, group: str, replica: str):
        self.kv, self.group, self.replica = kv, group, replica
        self._member_value = json.dumps(
            {"replica": replica, "lang": "python", "startedMs": int(time.time() * 1000)}
        ).encode()
        self._owner_value = json.dumps({"replica": replica}).encode()

    async def heartbeat(self) -> None:
        await self.kv.put(protocol.member_key(self.group, self.replica), self._member_value)

    async def leave(self) -> None:
        await self.kv.delete(protocol.member_key(self.group, self.replica))

    async def members(self) -> List[str]:
        prefix = protocol.member_prefix(self.group)
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        return [k[len(prefix):] for k in keys if k.startswith(prefix)]

    async def acquire(self, partition: Partition) -> Optional[int]:
        """The lease's revision, or None when another replica holds it."""
        try:
            return await self.kv.create(protocol.owner_key(self.group, partition), self._owner_value)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def renew(self, partition: Partition, revision: int) -> Optional[int]:
        """The new revision, or None when the lease was lost (expired or taken)."""
        try:
            return await self.kv.update(protocol.owner_key(self.group, partition), self._owner_value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def release(self, partition: Partition, revision: int) -> None:
        try:
            await self.kv.delete(protocol.owner_key(self.group, partition), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass  # lost meanwhile: not ours to delete
