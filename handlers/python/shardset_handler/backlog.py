"""Watching one owned partition's backlog for the metrics, as the Rust library does
(handlers/rust/src/backlog.rs): every ``every_s``, the consumer's info (``num_pending +
num_ack_pending``) and, when something waits, the stored time of its oldest message not yet
acknowledged (the first message of the partition's subject after the consumer's ack floor).
Runs beside the partition's loop while the replica owns it; its gauges go when it stops."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from .metrics import Metrics, lag_seconds
from .protocol import Partition

log = logging.getLogger("shardset_handler")


class Backlog:
    def __init__(self, partition: Partition, js, stream: str, consumer: str, subject: str,
                 metrics: Metrics, every_s: float):
        self.partition, self.js, self.stream = partition, js, stream
        self.consumer, self.subject = consumer, subject
        self.metrics, self.every_s = metrics, every_s

    async def run(self, stop: asyncio.Event) -> None:
        """Samples until ``stop`` is set (or the task is cancelled), then removes the
        partition's gauges."""
        try:
            while not stop.is_set():
                await self.sample()
                try:
                    await asyncio.wait_for(stop.wait(), self.every_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.metrics.forget(self.partition)

    async def sample(self) -> None:
        """One sample; a failed request (the bus away) leaves the last values."""
        try:
            info = await self.js.consumer_info(self.stream, self.consumer)
        except Exception as e:
            log.debug("partition %s: consumer info failed: %s", self.partition, e)
            return
        pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
        oldest: Optional[float] = None
        if pending:
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            try:
                first_unacked = await self.js.get_msg(self.stream, seq=floor + 1, subject=self.subject, next=True)
                oldest = first_unacked.time.timestamp() if first_unacked.time else None
            except Exception as e:
                # Acknowledged (and removed) since the consumer info: nothing older waits.
                log.debug("partition %s: oldest message not read: %s", self.partition, e)
        self.metrics.backlog(self.partition, pending, lag_seconds(time.time(), oldest))
