"""The Python library against a real nats-server: in-order consumption, bad messages, and a
Python replica sharing one bot's partitions with a Rust replica (the Rust library's recorder
example), ownership respected both ways, clean hand-over and failover."""

import asyncio
import time

from conftest import PARTITIONS, Bus, Recorder, guild_in
from shardset_handler import Config, Replica
from shardset_handler.protocol import Partition

TTL_S = 1.5
WITHIN = 20.0
ALL = set(Partition.all(PARTITIONS))


def config(server, replica: str) -> Config:
    return Config(nats_url=server.url, stream="shardset-test-bot", replica=replica, lease_ttl_s=TTL_S,
                  fetch_expires_s=0.25, retry_delay_s=0.05)


class Seen:
    """What the Python replica handled, in order, and a way to await it."""

    def __init__(self):
        self.events = []
        self.changed = asyncio.Condition()

    async def handler(self, event):
        async with self.changed:
            self.events.append({"partition": str(event.partition), "seq": event.seq,
                                "streamSeq": event.stream_seq, "delivered": event.delivered})
            self.changed.notify_all()

    async def wait(self, predicate, timeout=WITHIN):
        async def waiting():
            async with self.changed:
                await self.changed.wait_for(lambda: predicate(self.events))
        await asyncio.wait_for(waiting(), timeout)


def assert_in_order(events):
    last = {}
    for e in events:
        assert e["streamSeq"] >= last.get(e["partition"], 0), f"partition {e['partition']} went back"
        last[e["partition"]] = e["streamSeq"]


async def until(predicate, changes, timeout=WITHIN):
    """Waits until predicate() holds, re-checking whenever one of `changes` fires: each is a
    function returning a coroutine that ends at the next change of what it watches (it takes its
    snapshot when called, right after the check, with no await in between)."""
    async def loop():
        while not predicate():
            waits = {asyncio.create_task(change()) for change in changes}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
    await asyncio.wait_for(loop(), timeout)


def owned_changes(python, rust):
    """The next change of either replica's ownership."""
    def python_changes():
        before = set(python.owned)
        return python.wait_owned(lambda owned: owned != before, None)

    def rust_changes():
        before = set(rust.owned)
        return rust.wait(lambda: rust.owned != before, None)
    return [python_changes, rust_changes]


def handled_changes(seen, rust):
    """The next event either replica handles."""
    def python_handles():
        before = len(seen.events)
        return seen.wait(lambda events: len(events) != before, None)

    def rust_handles():
        before = len(rust.handled)
        return rust.wait(lambda: len(rust.handled) != before, None)
    return [python_handles, rust_handles]


async def until_both(python, rust, predicate, timeout=WITHIN):
    """Waits until predicate() holds, re-checking whenever either replica's ownership changes."""
    await until(predicate, owned_changes(python, rust), timeout)


async def publish_round(bus, k):
    seqs = set()
    for i in range(5):
        for p in range(PARTITIONS):
            seqs.add(await bus.publish(guild_in(p, k * 2 + i % 2)))
        seqs.add(await bus.publish(None))
    return seqs


def test_a_python_replica_consumes_in_order_and_terminates_bad_messages(server):
    async def scenario():
        bus = await Bus.create(server.url, TTL_S)
        await bus.publish(guild_in(1, 0), payload=b"{not json")
        await bus.publish(guild_in(1, 0), headers={"Nats-Msg-Id": "no-headers"})
        published = await publish_round(bus, 0)
        seen = Seen()
        replica = await Replica.start(config(server, "py"), seen.handler)
        await seen.wait(lambda events: len(events) >= len(published))
        assert sorted(e["seq"] for e in seen.events) == sorted(published)
        assert_in_order(seen.events)
        await replica.wait_owned(lambda owned: owned == ALL, WITHIN)
        stats = await replica.shutdown()
        assert (stats["handled"], stats["bad"]) == (len(published), 2)
        await bus.close()

    asyncio.run(scenario())


def test_python_and_rust_replicas_share_the_partitions(server):
    async def scenario():
        bus = await Bus.create(server.url, TTL_S)
        rust = await Recorder.start(server.url, "rust-1", int(TTL_S * 1000))
        await rust.wait(lambda: rust.owned == ALL, WITHIN)
        seen = Seen()
        python = await Replica.start(config(server, "py-1"), seen.handler)

        async def balanced():
            await until_both(python, rust, lambda: python.owned and rust.owned
                             and not (rust.owned & python.owned) and (rust.owned | python.owned) == ALL)
        await balanced()
        published = await publish_round(bus, 0)
        # Together: the last event may be either's, so a wait on one side alone could miss it.
        await until(lambda: len(rust.handled) + len(seen.events) >= len(published),
                    handled_changes(seen, rust))
        # Each partition handled by its owner only; every event once; in order on both sides.
        assert {e["partition"] for e in seen.events} <= {str(p) for p in python.owned}
        assert {e["partition"] for e in rust.handled} <= {str(p) for p in rust.owned}
        both = [e["seq"] for e in seen.events] + [e["seq"] for e in rust.handled]
        assert sorted(both) == sorted(published)
        assert_in_order(seen.events)
        assert_in_order(rust.handled)

        # The Python replica leaves cleanly: the Rust one takes its partitions without waiting
        # for an expiry.
        held = len(python.owned)
        started = time.monotonic()
        stats = await python.shutdown()
        assert stats["released"] == held, "every lease released, none left to expire"
        await rust.wait(lambda: rust.owned == ALL, WITHIN)
        assert time.monotonic() - started < 2 * TTL_S  # woken by the releases (slack for load)

        # A new Python replica joins; the Rust one dies (SIGKILL, no release): the Python one
        # takes everything once the leases expire.
        seen = Seen()
        python = await Replica.start(config(server, "py-2"), seen.handler)
        await balanced()
        killed = time.monotonic()
        await rust.kill()
        await python.wait_owned(lambda owned: owned == ALL, WITHIN)
        failover = time.monotonic() - killed
        assert failover <= TTL_S * 4 / 3 + 1.0, f"failover took {failover:.2f}s"  # slack for load
        more = await publish_round(bus, 1)
        await seen.wait(lambda events: {e["seq"] for e in events} >= more)
        assert_in_order(seen.events)
        await python.shutdown()
        await bus.close()

    asyncio.run(scenario())
