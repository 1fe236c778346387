"""The Python demo handler against the fake Discord (its binary) and a real nats-server: every
synthetic message published as the worker publishes it is answered exactly once
(/control/replies)."""

import asyncio
import json
import sys
import time
from pathlib import Path

from conftest import Bus, control
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
