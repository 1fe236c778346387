"""The Python demo handler against the fake Discord (its binary) and a real nats-server: every
synthetic message published as the worker publishes it is answered exactly once
(/control/replies); run as a process, it serves the library's bus metrics on DEMO_HANDLER_LISTEN."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import PARTITIONS, STREAM, Bus, control, free_port, series_of, value_in
from shardset_handler import Config, Replica

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from demo_handler import Replier, reply_to  # noqa: E402


def test_reply_to_answers_users_messages_only():
    assert reply_to("MESSAGE_CREATE", b'{"id":"1","channel_id":"2","author":{"bot":false}}') == ("2", "1")
    assert reply_to("MESSAGE_CREATE", b'{"id":"1","channel_id":"2","author":{"bot":true}}') is None
    assert reply_to("MESSAGE_UPDATE", b'{"id":"1","channel_id":"2"}') is None
    assert reply_to("MESSAGE_CREATE", b"[]") is None
    assert "secret" not in repr(Replier("http://x/api", "secret"))


def test_every_message_is_answered_once(server, fake):
    async def scenario():
        bus = await Bus.create(server.url, 1.5)
        guild = int(control(fake, "guilds?shard=0&num_shards=1")["guild_ids"][0])
        channel = guild | 1  # the fake's text channel of a guild (tests/fake-discord/src/world.rs)
        ids = control(fake, "messages", {"guild_id": str(guild), "count": 4})["ids"]
        for message_id in ids:
            d = {"id": message_id, "channel_id": str(channel), "guild_id": str(guild),
                 "author": {"id": "7", "username": "user7", "bot": False}, "content": "hello"}
            await bus.publish(guild, payload=json.dumps(d).encode())
        replier = Replier(f"{fake}/api", "demo-token")
        handled = asyncio.Queue()

        async def handle(event):
            await replier.handle(event)
            handled.put_nowait(event.seq)

        replica = await Replica.start(Config(nats_url=server.url, stream="shardset-test-bot", lease_ttl_s=1.5,
                                             fetch_expires_s=0.25), handle)
        for _ in ids:
            await asyncio.wait_for(handled.get(), 20)
        report = control(fake, f"replies?since_ms={int(time.time() * 1000) - 600_000}")
        assert (report["messages"], report["exactly_once"], report["multiple"]) == (4, 4, 0), report
        await replica.shutdown()
        await bus.close()

    asyncio.run(scenario())


def test_the_demo_process_serves_the_bus_metrics_on_demo_handler_listen(server, fake):
    async def scenario():
        bus = await Bus.create(server.url, 1.5)
        port = free_port()
        env = dict(os.environ, NATS_URL=server.url, SHARDSET_STREAM=STREAM, SHARDSET_LEASE_TTL_MS="1500",
                   DISCORD_TOKEN="demo-token", DISCORD_API_URL=f"{fake}/api",
                   DEMO_HANDLER_LISTEN=f"127.0.0.1:{port}")
        demo = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[1] / "demo_handler.py")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        expected = [  # every partition owned, and partition 0's backlog sampled (empty)
            (series_of("partitions_owned", stream=STREAM, group="default"), PARTITIONS + 1),
            (series_of("consumer_pending_messages", stream=STREAM, partition="0"), 0),
        ]

        def scrape():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return ""  # not listening yet

        try:
            # Nothing announces the replica's ownership outside the process: scrape until it shows.
            deadline = time.monotonic() + 20
            while not all(value_in(scrape(), series) == v for series, v in expected):
                assert demo.poll() is None, "demo_handler.py exited"
                assert time.monotonic() < deadline, f"{expected} not served:\n{scrape()}"
                await asyncio.sleep(0.1)
        finally:
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(20) == 0, "SIGTERM hands the partitions over and exits cleanly"
            await bus.close()

    asyncio.run(scenario())
