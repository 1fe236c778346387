"""Commands back from the Python library to a real shard-worker (docs/bus-protocol.md, "Commands
back"): the worker publishing to a real nats-server, with a real redis-server and the fake Discord,
answers a presence, op 8 with its chunks, Discord's RATE_LIMITED with retryAfterMs, and refuses an
Identify; the fake records what reached it."""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import PARTITIONS, PREFIX, STREAM, cargo_binary, control, free_port, start_fake
from shardset_handler import Config, Replica
from shardset_handler.commands import PRESENCE_UPDATE, REQUEST_GUILD_MEMBERS, CommandError

WINDOW_MS = "200"  # the fake's Identify window, and the worker's: the shard starts in a moment


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def redis_url():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server not found")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 10, "redis-server")
    yield f"redis://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


@pytest.fixture
def worker(server, redis_url):
    """The fake Discord and a shard-worker of shard 0 of 1, publishing to `server`, once it takes
    commands: (the fake's base URL, the worker's metrics URL)."""
    fake, fake_proc = start_fake("--identify-window-ms", WINDOW_MS)
    listen = f"127.0.0.1:{free_port()}"
    env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info", "SHARD_FIRST": "0", "SHARD_LAST": "0",
           "SHARD_TOTAL": "1", "REDIS_URL": redis_url, "DISCORD_API_URL": f"{fake}/api",
           "DISCORD_TOKEN": "py-commands-token", "POD_NAME": "py-commands", "IDENTIFY_WINDOW_MS": WINDOW_MS,
           "WORKER_LISTEN": listen, "DISCORD_INTENTS": "515", "NATS_URL": server.url,
           "SHARDSET_STREAM": STREAM, "SHARDSET_SUBJECT_PREFIX": PREFIX,
           "SHARDSET_PARTITIONS": str(PARTITIONS)}
    log = tempfile.NamedTemporaryFile(prefix="shard-worker-py-", suffix=".log", delete=False)
    proc = subprocess.Popen([cargo_binary("shard-worker")], env=env, stdout=subprocess.DEVNULL, stderr=log)
    metrics = f"http://{listen}/metrics"

    def answering() -> bool:
        try:
            with urllib.request.urlopen(metrics, timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return False
        return any(line.startswith("shardset_bus_command_shards") and line.endswith(" 1")
                   for line in text.splitlines())

    try:
        wait_for(answering, 30, f"the worker to take commands (log: {log.name})")
        yield fake, metrics
    finally:
        proc.kill()
        proc.wait()
        fake_proc.kill()
        fake_proc.wait()
        os.unlink(log.name)


def test_the_python_library_sends_commands_through_a_real_worker(server, worker):
    fake, _ = worker
    guild = int(control(fake, "guilds?shard=0&num_shards=1")["guild_ids"][0])

    async def scenario():
        replica = await Replica.start(Config(nats_url=server.url, stream=STREAM), lambda event: asyncio.sleep(0))
        commands = replica.commands.with_total(1)
        presence = {"since": None, "activities": [{"name": "python", "type": 0}], "status": "idle", "afk": False}
        assert await commands.send_to_shard(1, 0, PRESENCE_UPDATE, presence) == []
        # op 8 with a nonce: the chunks come back.
        chunks = await commands.send_for_guild(
            guild, REQUEST_GUILD_MEMBERS, {"guild_id": str(guild), "query": "u", "limit": 5, "nonce": "py-1"})
        assert [(c["nonce"], c["chunk_index"], c["chunk_count"], c["guild_id"]) for c in chunks] == \
            [("py-1", 0, 1, str(guild))]
        assert 1 <= len(chunks[0]["members"]) <= 5, chunks
        # All members twice within 30 s: Discord answers the second with RATE_LIMITED. (The first
        # may be too large for one NATS message: Discord answered it all the same.)
        everyone = {"guild_id": str(guild), "query": "", "limit": 0}
        try:
            await commands.send_for_guild(guild, REQUEST_GUILD_MEMBERS, {**everyone, "nonce": "py-2"})
        except CommandError as e:
            assert e.kind == "too_large", e
        with pytest.raises(CommandError) as limited:
            await commands.send_for_guild(guild, REQUEST_GUILD_MEMBERS, {**everyone, "nonce": "py-3"})
        assert limited.value.kind == "rate_limited"
        assert 20 < limited.value.retry_after_s <= 30
        with pytest.raises(CommandError) as refused:
            await commands.send_to_shard(1, 0, 2, {"token": "not-ours"})
        assert refused.value.kind == "refused"
        await replica.shutdown()

    asyncio.run(scenario())
    wait_for(lambda: len(control(fake, "commands?shard=0")) >= 4, 5, "the fake to record the commands")
    seen = control(fake, "commands?shard=0")
    assert [(c["op"], c["outcome"]) for c in seen] == \
        [(3, "accepted"), (8, "answered"), (8, "answered"), (8, "rate_limited")], seen
    assert seen[0]["d"] == {"since": None, "activities": [{"name": "python", "type": 0}], "status": "idle",
                            "afk": False}
