"""Fixtures of the Python library's tests: a real nats-server per test (the one make test-tools
builds, found as tests/nats-server finds it), the bot's stream and the default group's consumers
as the publishing worker creates them, events published with the protocol's headers, the
Rust library's recorder example for the interop tests, and the fake Discord (its binary) with
its control API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shardset_handler import protocol
from shardset_handler.protocol import Partition

REPO = Path(__file__).resolve().parents[3]
PARTITIONS = 4
TOTAL = 16
STREAM = "shardset-test-bot"
PREFIX = "shardset.test.bot"


def nats_server_binary() -> str:
    if os.environ.get("NATS_SERVER_BIN"):
        return os.environ["NATS_SERVER_BIN"]
    cache = os.environ.get("SHARDSET_CACHE_DIR") or (
        os.path.join(os.environ["XDG_CACHE_HOME"], "shardset") if os.environ.get("XDG_CACHE_HOME")
        else os.path.expanduser("~/.cache/shardset"))
    cached = os.path.join(cache, "bin", "nats-server")
    if os.path.exists(cached):
        return cached
    found = shutil.which("nats-server")
    if not found:
        pytest.fail("nats-server not found: build it with `make test-tools`, or set NATS_SERVER_BIN")
    return found


def recorder_binary() -> str:
    if os.environ.get("SHARDSET_RECORDER_BIN"):
        return os.environ["SHARDSET_RECORDER_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = os.path.join(target, "debug", "examples", "recorder")
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: cargo build -p shardset-handler --example recorder")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo_binary(name: str) -> str:
    """A binary of the workspace's debug build."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = os.path.join(target, "debug", name)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: cargo build --bin {name}")
    return path


def start_fake(*args: str):
    """The fake Discord on a free loopback port, with `args`: (its base URL, its process)."""
    port = free_port()
    proc = subprocess.Popen([cargo_binary("fake-discord"), "--listen", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()  # "fake-discord listening on ...": it accepts connections now
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture
def fake():
    base, proc = start_fake()
    yield base
    proc.kill()
    proc.wait()


def control(base, path, body=None):
    request = urllib.request.Request(f"{base}/control/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class NatsServer:
    """A real nats-server -js on a free loopback port with its own store; killed on stop()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nats-test-py-")
        self.proc: Optional[subprocess.Popen] = None
        for _ in range(10):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            if self._launch():
                return
        raise RuntimeError("nats-server could not get a free port")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _launch(self) -> bool:
        name = f"nats-test-py-{os.getpid()}-{self.port}-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [nats_server_binary(), "--jetstream", "--addr", "127.0.0.1", "--port", str(self.port),
             "--store_dir", os.path.join(self.dir, "store"), "--server_name", name,
             "--log", os.path.join(self.dir, "nats.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # lost the port
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    info = s.makefile().readline()
                if f'"server_name":"{name}"' in info:
                    return True
                self.stop()
                return False
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server did not come up on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server():
    s = NatsServer()
    yield s
    s.close()


def guild_in(partition: int, k: int) -> int:
    """A guild id whose partition (of PARTITIONS) is `partition`."""
    return ((k * PARTITIONS + partition) << 22) | 0x12345


class Bus:
    """The publishing side, as the worker does it."""

    def __init__(self, nc, js):
        self.nc, self.js, self.seq = nc, js, 0

    @classmethod
    async def create(cls, url: str, ack_wait_s: float) -> "Bus":
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(protocol.stream_config(STREAM, PREFIX, PARTITIONS))
        for partition in Partition.all(PARTITIONS):
            await js.add_consumer(STREAM, protocol.consumer_config(
                STREAM, PREFIX, protocol.DEFAULT_GROUP, partition, ack_wait_s))
        return cls(nc, js)

    async def publish(self, guild: Optional[int], payload: Optional[bytes] = None, headers=None) -> int:
        self.seq += 1
        shard = protocol.shard_of_guild(guild, TOTAL) if guild is not None else 0
        if headers is None:
            headers = {
                protocol.HEADER_EVENT: "MESSAGE_CREATE",
                protocol.HEADER_SHARD: str(shard),
                protocol.HEADER_TOTAL: str(TOTAL),
                protocol.HEADER_SEQ: str(self.seq),
                protocol.HEADER_MSG_ID: protocol.session_msg_id("session-py", self.seq),
            }
            if guild is not None:
                headers[protocol.HEADER_GUILD] = str(guild)
        body = payload if payload is not None else json.dumps({"id": str(self.seq)}).encode()
        await self.js.publish(protocol.event_subject(PREFIX, Partition.of(guild, PARTITIONS)), body,
                              headers=headers)
        return self.seq

    async def close(self) -> None:
        await self.nc.close()


class Recorder:
    """The Rust library's recorder example as a replica process; what it reports on stdout."""

    def __init__(self, proc):
        self.proc, self.owned, self.handled = proc, set(), []
        self.changed = asyncio.Condition()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, replica: str, ttl_ms: int) -> "Recorder":
        env = dict(os.environ, NATS_URL=url, SHARDSET_STREAM=STREAM, SHARDSET_HANDLER_REPLICA=replica,
                   SHARDSET_LEASE_TTL_MS=str(ttl_ms))
        proc = await asyncio.create_subprocess_exec(recorder_binary(), env=env, stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            report = json.loads(line)
            async with self.changed:
                if "owned" in report:
                    self.owned = {Partition.parse(t) for t in report["owned"]}
                if "handled" in report:
                    self.handled.append(report["handled"])
                self.changed.notify_all()

    async def wait(self, predicate, timeout: float) -> None:
        async def waiting():
            async with self.changed:
                await self.changed.wait_for(predicate)
        await asyncio.wait_for(waiting(), timeout)

    async def terminate(self) -> None:
        self.proc.terminate()
        await self.proc.wait()
        await self.reader

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()
        await self.reader


def series_of(name: str, **labels):
    """A series of the bus metrics, as (name, labels), for value_in."""
    return f"shardset_bus_{name}", labels


def value_in(text: str, series):
    """The value of the series (name, labels) in Prometheus text, if present (the label order of
    the text is the client's: prometheus-client sorts them)."""
    name, labels = series
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None
