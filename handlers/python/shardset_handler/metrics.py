"""The bus metrics a handler replica exports, the same families as the Rust library's
(handlers/rust/src/metrics.rs; README "Metrics and endpoints", the bot tier's rows), with
prometheus-client in a registry the service hands in (default: the global one):

- ``shardset_bus_consumer_lag_seconds{stream,partition}``: now minus the JetStream timestamp of
  the partition's oldest message not yet acknowledged by this group, 0 when none; exported by
  the replica owning the partition (the series goes when the partition does);
- ``shardset_bus_consumer_pending_messages{stream,partition}``: the consumer's ``num_pending +
  num_ack_pending``;
- ``shardset_bus_redeliveries_total{stream,partition}``: deliveries whose count is above 1;
- ``shardset_bus_partitions_owned{stream,group}``: partitions this replica consumes. Every live
  replica exports it (0 when it owns none), so the number of its series per stream and group is
  the number of handler replicas (one replica per process, as one per pod).

``serve_metrics`` is the optional HTTP exporter (the demo handler's ``/metrics``)."""

from __future__ import annotations

import weakref
from typing import Optional

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server

from .protocol import Partition


class _Families:
    """The four families, registered once per registry (prometheus-client refuses a name twice,
    and a process may run replicas of several streams)."""

    def __init__(self, registry: CollectorRegistry):
        partition = ["stream", "partition"]
        self.lag = Gauge(
            "shardset_bus_consumer_lag_seconds",
            "Now minus the JetStream timestamp of the partition's oldest message not yet acknowledged (0 when none)",
            partition, registry=registry)
        self.pending = Gauge(
            "shardset_bus_consumer_pending_messages",
            "Messages of the partition's consumer not yet acknowledged (num_pending + num_ack_pending)",
            partition, registry=registry)
        self.redeliveries = Counter(
            "shardset_bus_redeliveries",
            "Messages delivered again (not acknowledged in time, or refused)",
            partition, registry=registry)
        self.partitions_owned = Gauge(
            "shardset_bus_partitions_owned",
            "Partitions this handler replica consumes (one series per live replica)",
            ["stream", "group"], registry=registry)


_families: "weakref.WeakKeyDictionary[CollectorRegistry, _Families]" = weakref.WeakKeyDictionary()


class Metrics:
    """The bus metrics of a replica of ``group`` consuming ``stream``, in ``registry``."""

    def __init__(self, registry: Optional[CollectorRegistry], stream: str, group: str):
        registry = REGISTRY if registry is None else registry
        families = _families.get(registry)
        if families is None:
            families = _families[registry] = _Families(registry)
        self._families, self._stream = families, stream
        self._owned = families.partitions_owned.labels(stream=stream, group=group)

    def delivered(self, partition: Partition, delivered: int) -> None:
        """A delivery whose count is ``delivered`` (1 for the first)."""
        if delivered > 1:
            self._families.redeliveries.labels(stream=self._stream, partition=str(partition)).inc()

    def backlog(self, partition: Partition, pending: int, lag_s: float) -> None:
        """What the partition's consumer holds: ``pending`` messages not yet acknowledged, the
        oldest ``lag_s`` old."""
        labels = dict(stream=self._stream, partition=str(partition))
        self._families.pending.labels(**labels).set(pending)
        self._families.lag.labels(**labels).set(lag_s)

    def forget(self, partition: Partition) -> None:
        """The partition is no longer this replica's: its gauges go (the next owner exports
        them); its redeliveries stay counted."""
        for gauge in (self._families.pending, self._families.lag):
            try:
                gauge.remove(self._stream, str(partition))
            except KeyError:
                pass  # never sampled

    def owned(self, partitions: int) -> None:
        self._owned.set(partitions)


def lag_seconds(now_s: float, oldest_s: Optional[float]) -> float:
    """The lag of a partition whose oldest unacknowledged message was stored at ``oldest_s``
    (Unix seconds), seen at ``now_s``: 0 when there is none, and never negative (the server's
    clock may run ahead of ours)."""
    if oldest_s is None or now_s <= oldest_s:
        return 0.0
    return now_s - oldest_s


def serve_metrics(listen: str, registry: Optional[CollectorRegistry] = None):
    """Serves ``registry`` (default: the global one) in Prometheus' text format on ``listen``
    (``host:port``; every path answers, ``/metrics`` included) from a daemon thread; returns
    the server (``shutdown()`` stops it)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{listen!r} is not host:port")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"),
                                        registry=REGISTRY if registry is None else registry)
    return server
