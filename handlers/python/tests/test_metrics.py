"""The replica's bus metrics (README "Metrics and endpoints"): the same names, labels and
meanings as the Rust library's (handlers/rust/src/metrics.rs), and, against a real nats-server,
the figures its test asserts (handlers/rust/tests/bus/metrics.rs): an event held by the handler
with two behind it shows as pending 3 and lag > 0.2 s on its partition, a refused one as one
redelivery, and the partitions owned are counted; read from the registry's text, as Prometheus
reads `/metrics`."""

import asyncio
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from conftest import PARTITIONS, Bus, free_port, guild_in, series_of, value_in
from shardset_handler import Config, Metrics, Replica, serve_metrics
from shardset_handler.metrics import lag_seconds
from shardset_handler.protocol import Partition

TTL_S = 1.5
WITHIN = 20.0


def value(registry, series):
    return value_in(generate_latest(registry).decode(), series)


async def wait_value(registry, series, ok) -> float:
    """Waits until the series' value satisfies `ok` (the backlog is sampled every 50 ms and
    nothing announces a sample: this re-reads the registry meanwhile)."""
    async def waiting():
        while True:
            v = value(registry, series)
            if v is not None and ok(v):
                return v
            await asyncio.sleep(0.02)
    try:
        return await asyncio.wait_for(waiting(), WITHIN)
    except asyncio.TimeoutError:
        raise AssertionError(f"{series} not as expected within {WITHIN}s: {value(registry, series)}") from None


def test_lag_is_the_age_of_the_oldest_unacked_message():
    assert lag_seconds(5.0, None) == 0.0
    assert lag_seconds(5.0, 3.5) == 1.5
    assert lag_seconds(5.0, 6.0) == 0.0  # a server clock ahead of ours is no negative lag


def test_names_types_and_labels_are_the_contract():
    registry = CollectorRegistry()
    metrics = Metrics(registry, "shardset-ns-bot", "default")
    metrics.backlog(Partition(3), 7, 2.5)
    metrics.backlog(Partition(None), 0, 0.0)
    metrics.delivered(Partition(3), 1)
    metrics.delivered(Partition(3), 2)
    metrics.owned(2)
    text = generate_latest(registry).decode()
    for line in [
        "# TYPE shardset_bus_consumer_lag_seconds gauge",
        "# TYPE shardset_bus_consumer_pending_messages gauge",
        "# TYPE shardset_bus_redeliveries_total counter",
        "# TYPE shardset_bus_partitions_owned gauge",
    ]:
        assert line in text.splitlines(), f"{line} in\n{text}"
    stream = "shardset-ns-bot"
    for series, expected in [
        (series_of("consumer_lag_seconds", stream=stream, partition="3"), 2.5),
        (series_of("consumer_lag_seconds", stream=stream, partition="global"), 0.0),
        (series_of("consumer_pending_messages", stream=stream, partition="3"), 7.0),
        (series_of("redeliveries_total", stream=stream, partition="3"), 1.0),
        (series_of("partitions_owned", stream=stream, group="default"), 2.0),
    ]:
        assert value_in(text, series) == expected, f"{series} in\n{text}"


def test_a_partition_given_up_loses_its_gauges_not_its_counter():
    registry = CollectorRegistry()
    metrics = Metrics(registry, "s", "default")
    metrics.backlog(Partition(1), 4, 1.0)
    metrics.delivered(Partition(1), 3)
    metrics.forget(Partition(1))
    assert value(registry, series_of("consumer_lag_seconds", stream="s", partition="1")) is None
    assert value(registry, series_of("consumer_pending_messages", stream="s", partition="1")) is None
    assert value(registry, series_of("redeliveries_total", stream="s", partition="1")) == 1.0


def test_two_streams_share_one_registry_and_the_exporter_serves_it():
    registry = CollectorRegistry()
    Metrics(registry, "a", "default").owned(1)
    Metrics(registry, "b", "default").owned(2)  # no duplicate registration
    port = free_port()
    server = serve_metrics(f"127.0.0.1:{port}", registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    assert value_in(text, series_of("partitions_owned", stream="a", group="default")) == 1.0
    assert value_in(text, series_of("partitions_owned", stream="b", group="default")) == 2.0


def test_lag_pending_redeliveries_and_partitions_owned_are_exported(server):
    async def scenario():
        bus = await Bus.create(server.url, TTL_S)
        registry = CollectorRegistry()
        stream = "shardset-test-bot"

        def series(name, partition):
            return series_of(name, stream=stream, partition=partition)
        owned = series_of("partitions_owned", stream=stream, group="default")

        # The handler holds each event of partition 0 until given a permit, and refuses the
        # first delivery of the second event.
        permits, started, handled = asyncio.Semaphore(0), asyncio.Event(), []

        async def handler(event):
            if event.seq == 2 and event.delivered == 1:
                raise RuntimeError("refused once")
            started.set()
            await permits.acquire()
            handled.append(event.seq)

        config = Config(nats_url=server.url, stream=stream, replica="r", lease_ttl_s=TTL_S,
                        fetch_expires_s=0.25, retry_delay_s=0.05, backlog_every_s=0.05)
        replica = await Replica.start(config, handler, registry=registry)
        await wait_value(registry, owned, lambda v: v == PARTITIONS + 1)
        await replica.wait_owned(lambda o: len(o) == PARTITIONS + 1, WITHIN)
        assert value(registry, owned) == len(replica.owned)
        # Nothing published yet: the owned partitions export 0 lag, 0 pending.
        assert await wait_value(registry, series("consumer_pending_messages", "0"), lambda _: True) == 0.0
        assert value(registry, series("consumer_lag_seconds", "0")) == 0.0

        guild = guild_in(0, 0)
        for _ in range(3):
            await bus.publish(guild)
        await asyncio.wait_for(started.wait(), WITHIN)
        # Event 1 is in hand (acknowledgement pending), 2 and 3 wait behind it.
        await wait_value(registry, series("consumer_pending_messages", "0"), lambda v: v == 3.0)
        lag = await wait_value(registry, series("consumer_lag_seconds", "0"), lambda v: v > 0.2)
        assert lag < 20.0, f"lag {lag} s: the age of event 1"
        # Other partitions hold nothing.
        assert value(registry, series("consumer_pending_messages", "1")) == 0.0

        for _ in range(3):
            permits.release()

        async def all_handled():
            while len(handled) < 3:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(all_handled(), WITHIN)
        assert handled == [1, 2, 3]
        assert value(registry, series("redeliveries_total", "0")) == 1.0, "event 2, refused once"
        await wait_value(registry, series("consumer_pending_messages", "0"), lambda v: v == 0.0)
        await wait_value(registry, series("consumer_lag_seconds", "0"), lambda v: v == 0.0)

        # Leaving: no partition owned, their gauges gone (the next owner exports them).
        await replica.shutdown()
        assert value(registry, owned) == 0.0
        assert value(registry, series("consumer_pending_messages", "0")) is None
        assert value(registry, series("consumer_lag_seconds", "0")) is None
        await bus.close()

    asyncio.run(scenario())
