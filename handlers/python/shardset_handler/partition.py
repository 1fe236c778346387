"""Consuming one owned partition: pull one event at a time (the consumer lets one be in flight),
hand it to the handler with progress acks while it runs, then ack, redeliver later (failure) or
terminate (bad message, too many failures). Stopping finishes the event in hand and gives back
any event delivered after it (nak), so the next owner never waits for ack_wait."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors

from .event import BadMessage, Event, parse_head
from .protocol import Partition

log = logging.getLogger("shardset_handler")

MAX_RETRY_DELAY_S = 30.0


def retry_delay(base_s: float, delivered: int) -> float:
    return min(base_s * (2 ** min(max(delivered - 1, 0), 16)), MAX_RETRY_DELAY_S)


class PartitionRun:
    def __init__(self, partition: Partition, psub, handler, commands, stats, metrics, config, ack_wait_s: float):
        self.partition, self.psub, self.handler = partition, psub, handler
        self.commands, self.stats, self.metrics, self.config = commands, stats, metrics, config
        self.progress_every = max(ack_wait_s / 3, 0.1)
        self.stop = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.1
        while not self.stop.is_set():
            try:
                messages = await self.psub.fetch(1, timeout=self.config.fetch_expires_s)
            except nats.errors.TimeoutError:
                continue
            except Exception as e:  # bus down, consumer gone: retry
                log.warning("partition %s: pull failed (%s); retrying", self.partition, e)
                try:
                    await asyncio.wait_for(self.stop.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            for message in messages:
                if self.stop.is_set():
                    await _settle(message.nak())
                else:
                    await self.handle(message)
        await self._drain()

    async def _drain(self) -> None:
        """Waits out the last pull (the server ends it with a status) and gives back what it
        delivered after we stopped. nats-py keeps those in the subscription's queue."""
        sub = self.psub._sub  # nats-py's PullSubscription has no public way to read the tail
        while True:
            try:
                message = await sub.next_msg(timeout=self.config.fetch_expires_s)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                break
            except Exception:
                break
            if message.headers and message.headers.get("Status"):
                continue  # the expired pull's 408, or a heartbeat
            await _settle(message.nak())
        try:
            await self.psub.unsubscribe()
            await self.psub._nc.flush()  # our acks reach the server before the lease is released
        except Exception:
            pass

    async def handle(self, message) -> None:
        try:
            meta = message.metadata
            stream_seq, delivered = meta.sequence.stream, max(meta.num_delivered, 1)
        except Exception:
            stream_seq, delivered = 0, 1
        self.metrics.delivered(self.partition, delivered)
        try:
            head = parse_head(message.headers, message.data)
        except BadMessage as bad:
            self.stats["bad"] += 1
            log.warning("partition %s: not an event of the bus protocol (%s): terminated; stream seq %s",
                        self.partition, bad.label, stream_seq)
            await _settle(message.term())
            return
        if delivered > 1:
            self.stats["redelivered"] += 1
        event = Event(
            name=head.name, shard=head.shard, total=head.total, seq=head.seq, guild=head.guild,
            data=message.data, partition=self.partition, stream_seq=stream_seq, delivered=delivered,
            commands=self.commands.with_total(head.total),
        )
        error = await self._call(event, message)
        if error is None:
            await _settle(message.ack())
            self.stats["handled"] += 1
        elif delivered >= self.config.max_attempts:
            self.stats["terminated"] += 1
            log.error("partition %s: handler failed on every attempt (%s): event terminated", self.partition, error)
            await _settle(message.term())
        else:
            self.stats["failed"] += 1
            delay = retry_delay(self.config.retry_delay_s, delivered)
            log.warning("partition %s: handler failed (%s): redelivering in %.2fs", self.partition, error, delay)
            await _settle(message.nak(delay=delay))

    async def _call(self, event: Event, message):
        """Runs the handler with progress acks meanwhile; returns None or the failure."""
        task = asyncio.ensure_future(self.handler(event))
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.progress_every)
            if done:
                try:
                    task.result()
                    return None
                except Exception as e:  # the handler's failure: redeliver
                    return e
            await _settle(message.in_progress())


async def _settle(ack) -> None:
    try:
        await ack
    except Exception as e:  # connection lost: the event will be redelivered
        log.warning("ack not sent (%s): the event will be redelivered", e)
