"""A running handler replica and its ownership loop (docs/bus-protocol.md, "Partition
ownership"): on every tick (a third of the lease TTL) and whenever a member joins or leaves or a
lease is released, it heartbeats its member key, computes its assignment from the live members,
renews its leases, stops the partitions that moved away (releasing each lease once its event in
hand is settled) and takes the free leases of its partitions. kill() stops without releasing.
Each owned partition runs with its backlog watch beside it (backlog.py); the bus metrics
(metrics.py) go to the registry given to start()."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Set

import nats
import nats.js.errors
from nats.js import api
from prometheus_client import CollectorRegistry

from . import protocol
from .assignment import assigned
from .backlog import Backlog
from .commands import Commands
from .config import Config
from .leases import Leases
from .metrics import Metrics
from .partition import PartitionRun
from .protocol import Partition

log = logging.getLogger("shardset_handler")


class NotABusStream(Exception):
    pass


@dataclass
class _Held:
    revision: int
    run: PartitionRun
    task: asyncio.Task
    running: bool = True
    lost: bool = False


def layout_of(metadata: Optional[dict]) -> tuple:
    """(subject prefix, partitions) from the stream's metadata."""
    metadata = metadata or {}
    if metadata.get(protocol.META_PROTOCOL) != str(protocol.PROTOCOL_VERSION):
        raise NotABusStream("no supported shardset.io/protocol metadata")
    prefix = metadata.get(protocol.META_SUBJECT_PREFIX)
    partitions = metadata.get(protocol.META_PARTITIONS, "")
    if not prefix or not partitions.isdigit() or int(partitions) < 1:
        raise NotABusStream("no shardset.io/subject-prefix or valid shardset.io/partitions metadata")
    return prefix, int(partitions)


async def _consume(run: PartitionRun, backlog: Backlog) -> None:
    """A partition's loop with its backlog watch beside it; the watch ends with the loop (told
    by the same ``stop``), however the loop ends."""
    watch = asyncio.create_task(backlog.run(run.stop))
    try:
        await run.run()
    finally:
        run.stop.set()
        await asyncio.gather(watch, return_exceptions=True)


class Replica:
    """One replica of a handler service. Use ``await Replica.start(config, handler)``; its bus
    metrics go to ``registry=`` (default: prometheus-client's global registry)."""

    def __init__(self):
        self.owned: Set[Partition] = set()
        self.stats: Dict[str, int] = dict(handled=0, redelivered=0, bad=0, failed=0, terminated=0, released=0)
        self._held: Dict[Partition, _Held] = {}
        self._wakes: asyncio.Queue = asyncio.Queue()
        self._owned_changed = asyncio.Condition()
        self._leaving = False

    @classmethod
    async def start(cls, config: Config, handler: Callable,
                    registry: Optional[CollectorRegistry] = None) -> "Replica":
        config.validate()
        self = cls()
        self.config, self.handler, self.id = config, handler, config.replica
        self.metrics = Metrics(registry, config.stream, config.group)
        options = dict(servers=config.nats_url.split(","), name=f"shardset-handler {config.replica}",
                       max_reconnect_attempts=-1)
        if config.user:
            options.update(user=config.user, password=config.password)
        if config.token:
            options.update(token=config.token)
        self.nc = await nats.connect(**options)
        self.js = self.nc.jetstream()
        info = await self._wait_for_stream()
        self.prefix, self.partitions = layout_of(info.config.metadata)
        self.kv, self.ttl = await self._ownership_bucket()
        self.leases = Leases(self.kv, config.group, config.replica)
        await self.leases.heartbeat()
        self.metrics.owned(0)  # a live replica exports its series from the start
        self.commands = Commands(self.nc, self.prefix, self.kv, config.command_timeout_s)
        log.info("joined handler group %s of %s as %s (%d partitions, lease TTL %.1fs)",
                 config.group, config.stream, config.replica, self.partitions, self.ttl)
        self._watcher = None
        self._loop = asyncio.create_task(self._run())
        return self

    async def _wait_for_stream(self):
        attempt = 0
        while True:
            try:
                return await self.js.stream_info(self.config.stream)
            except nats.js.errors.NotFoundError:
                if attempt % 60 == 0:
                    log.info("waiting for the bus stream %s", self.config.stream)
                attempt += 1
                await asyncio.sleep(0.5)

    async def _ownership_bucket(self):
        bucket = protocol.handlers_bucket(self.config.stream)
        try:
            kv = await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                kv = await self.js.create_key_value(api.KeyValueConfig(
                    bucket=bucket, history=1, ttl=self.config.lease_ttl_s, storage=api.StorageType.FILE))
            except nats.js.errors.APIError:
                kv = await self.js.key_value(bucket)  # created by another replica meanwhile
        ttl = (await kv.status()).ttl
        if not ttl:
            raise NotABusStream(f"{bucket} has no max_age: leases would never expire")
        return kv, ttl

    # ---- the loop ----

    async def _run(self) -> None:
        members_seen: Set[str] = set()
        next_tick = time.monotonic()
        while True:
            if self._watcher is None and not self._leaving:
                try:
                    self._watcher = await self.kv.watch(f"{self.config.group}.>")
                    self._watch_task = asyncio.create_task(self._watch(self._watcher, members_seen))
                except Exception as e:
                    log.warning("cannot watch the ownership bucket: %s", e)
            await self._reconcile()
            if self._leaving and not self._held:
                break
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.ttl / 3
            try:
                wake = await asyncio.wait_for(self._wakes.get(), max(next_tick - time.monotonic(), 0))
            except asyncio.TimeoutError:
                continue
            kind, value = wake
            if kind == "finished":
                await self._finished(value)
            elif kind == "leave":
                self._leaving = True
                try:
                    await self.leases.leave()
                except Exception as e:
                    log.warning("leaving the group failed (%s); the member key will expire", e)
        await self._set_owned(set())
        log.info("replica %s left the group, every lease released", self.id)

    async def _watch(self, watcher, members_seen: Set[str]) -> None:
        """Wakes the loop when a member joins or leaves or a lease is released."""
        member_prefix = protocol.member_prefix(self.config.group)
        owner_prefix = protocol.owner_prefix(self.config.group)
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                removed = entry.operation in ("DEL", "PURGE")
                if entry.key.startswith(member_prefix):
                    member = entry.key[len(member_prefix):]
                    if removed and member in members_seen:
                        members_seen.discard(member)
                        self._wakes.put_nowait(("reconcile", None))
                    elif not removed and member not in members_seen:
                        members_seen.add(member)
                        self._wakes.put_nowait(("reconcile", None))
                elif removed and entry.key.startswith(owner_prefix):
                    self._wakes.put_nowait(("reconcile", None))
        except Exception:
            pass
        self._watcher = None

    async def _reconcile(self) -> None:
        want = await self._wanted()
        for partition in list(self._held):
            held = self._held[partition]
            if not held.lost:
                try:
                    revision = await self.leases.renew(partition, held.revision)
                    if revision is None:
                        log.warning("partition %s: lease lost (expired or taken): stopping", partition)
                        held.lost, held.running = True, False
                        held.run.stop.set()
                    else:
                        held.revision = revision
                except Exception as e:
                    log.warning("partition %s: lease renewal failed: %s", partition, e)
            if held.running and want is not None and partition not in want:
                held.running = False
                held.run.stop.set()
        for partition in sorted(want or ()):
            if partition not in self._held:
                await self._acquire(partition)
        await self._set_owned({p for p, h in self._held.items() if h.running})

    async def _wanted(self) -> Optional[Set[Partition]]:
        if self._leaving:
            return set()
        try:
            await self.leases.heartbeat()
            return assigned(await self.leases.members(), self.id, self.partitions)
        except Exception as e:
            log.warning("cannot heartbeat or list the group's members: %s", e)
            return None

    async def _acquire(self, partition: Partition) -> None:
        try:
            revision = await self.leases.acquire(partition)
        except Exception as e:
            log.warning("partition %s: cannot take the lease: %s", partition, e)
            return
        if revision is None:
            return
        try:
            psub, ack_wait = await self._consumer(partition)
        except Exception as e:
            log.warning("partition %s: cannot bind its consumer (%s); releasing", partition, e)
            await self.leases.release(partition, revision)
            return
        run = PartitionRun(partition, psub, self.handler, self.commands, self.stats, self.metrics,
                           self.config, ack_wait)
        backlog = Backlog(partition, self.js, self.config.stream,
                          protocol.consumer_name(self.config.stream, self.config.group, partition),
                          protocol.event_subject(self.prefix, partition), self.metrics,
                          self.config.backlog_every_s)
        task = asyncio.create_task(_consume(run, backlog))
        task.add_done_callback(lambda _: self._wakes.put_nowait(("finished", partition)))
        self._held[partition] = _Held(revision=revision, run=run, task=task)
        log.info("partition %s owned (revision %d)", partition, revision)

    async def _consumer(self, partition: Partition):
        name = protocol.consumer_name(self.config.stream, self.config.group, partition)
        try:
            info = await self.js.consumer_info(self.config.stream, name)
        except nats.js.errors.NotFoundError:
            info = await self.js.add_consumer(self.config.stream, protocol.consumer_config(
                self.config.stream, self.prefix, self.config.group, partition, self.ttl))
        psub = await self.js.pull_subscribe_bind(durable=name, stream=self.config.stream)
        return psub, info.config.ack_wait or self.ttl

    async def _finished(self, partition: Partition) -> None:
        held = self._held.pop(partition, None)
        if held is None or held.lost:
            return
        try:
            await self.leases.release(partition, held.revision)
            self.stats["released"] += 1
            log.info("partition %s released", partition)
        except Exception as e:
            log.warning("partition %s: release failed (%s); the lease will expire", partition, e)

    async def _set_owned(self, owned: Set[Partition]) -> None:
        self.metrics.owned(len(owned))
        async with self._owned_changed:
            if owned != self.owned:
                self.owned = owned
                self._owned_changed.notify_all()

    # ---- the handle ----

    async def wait_owned(self, predicate: Callable[[Set[Partition]], bool], timeout: float) -> None:
        """Waits until predicate(owned) holds."""
        async def waiting():
            async with self._owned_changed:
                await self._owned_changed.wait_for(lambda: predicate(self.owned))
        await asyncio.wait_for(waiting(), timeout)

    async def shutdown(self) -> Dict[str, int]:
        """Leaves the group cleanly: each partition is handed over once its event in hand is
        settled and its lease released. Returns the final counters."""
        self._wakes.put_nowait(("leave", None))
        await self._loop
        await self._close()
        return dict(self.stats)

    async def kill(self) -> None:
        """Stops at once, releasing nothing (as a crash looks to the others)."""
        self._loop.cancel()
        for held in self._held.values():
            held.task.cancel()
        await self._close()

    async def _close(self) -> None:
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:
                pass
        try:
            await self.nc.close()
        except Exception:
            pass
