"""Gateway commands back to the workers (docs/bus-protocol.md, "Commands back"): a core NATS request on
S.commands.<total>.<shard> with {"op":N,"d":{...}}; replies {"ok":true[,"chunks":[...]]} or
{"ok":false,"error":{"kind":..,"message":..,"retryAfterMs":..}}."""

from __future__ import annotations

import json
from typing import Any, List, Optional

import nats.errors

from . import protocol

PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
REQUEST_GUILD_MEMBERS = 8


class CommandError(Exception):
    """``label``: no_responders, timed_out, worker, bad_reply, transport."""

    def __init__(self, label: str, message: str, kind: Optional[str] = None, retry_after_s: Optional[float] = None):
        super().__init__(message)
        self.label = label
        self.kind = kind
        self.retry_after_s = retry_after_s


def parse_reply(payload: bytes) -> List[Any]:
    """The chunks of a successful reply; raises CommandError otherwise."""
    try:
        reply = json.loads(payload)
        ok = reply["ok"]
    except (ValueError, KeyError, TypeError) as e:
        raise CommandError("bad_reply", f"the worker's reply is not the protocol's JSON: {e}") from None
    if ok:
        return list(reply.get("chunks") or [])
    error = reply.get("error") or {}
    retry = error.get("retryAfterMs")
    raise CommandError(
        "worker",
        f"the worker answered {error.get('kind', 'unknown')}: {error.get('message', '')}",
        kind=error.get("kind", "unknown"),
        retry_after_s=retry / 1000 if retry is not None else None,
    )


class Commands:
    def __init__(self, nc, prefix: str, kv=None, timeout_s: float = 10.0, total: int = 0):
        self._nc, self._prefix, self._kv, self._timeout, self.total = nc, prefix, kv, timeout_s, total

    def with_total(self, total: int) -> "Commands":
        return Commands(self._nc, self._prefix, self._kv, self._timeout, total)

    async def send_to_shard(self, total: int, shard: int, op: int, d: Any) -> List[Any]:
        body = json.dumps({"op": op, "d": d}).encode()
        try:
            reply = await self._nc.request(protocol.command_subject(self._prefix, total, shard), body, timeout=self._timeout)
        except nats.errors.NoRespondersError:
            raise CommandError("no_responders", f"no worker takes commands for shard {shard} of layout {total}") from None
        except nats.errors.TimeoutError:
            raise CommandError("timed_out", "the worker did not reply in time") from None
        return parse_reply(reply.data)

    async def send_for_guild(self, guild: int, op: int, d: Any) -> List[Any]:
        """To the shard of `guild` in the acting layout; on "no responders" the layout moved: read
        the `layout` key and try once more if it changed."""
        total = self.total or (await self._acting_total() or 0)
        if not total:
            raise CommandError("no_responders", "no acting layout known")
        try:
            return await self.send_to_shard(total, protocol.shard_of_guild(guild, total), op, d)
        except CommandError as e:
            if e.label != "no_responders":
                raise
            now = await self._acting_total()
            if not now or now == total:
                raise
            return await self.send_to_shard(now, protocol.shard_of_guild(guild, now), op, d)

    async def _acting_total(self) -> Optional[int]:
        if self._kv is None:
            return None
        try:
            entry = await self._kv.get(protocol.LAYOUT_KEY)
            total = int(json.loads(entry.value)["total"])
            return total if total > 0 else None
        except Exception:  # missing key, bad value, bus down: nothing known
            return None
