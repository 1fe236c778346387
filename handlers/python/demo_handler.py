"""The demo handler in Python: a replica of the bot's handler group that answers every
MESSAGE_CREATE written by a user with a REST reply `ack <message id>`, idempotently: the message
id is the `nonce`, with `enforce_nonce: true`, so a redelivered event (its replica died between
replying and acknowledging) gets back Discord's first reply instead of a second one
(discord-api-docs developers/resources/message.mdx, "Create Message").

Environment: the library's (NATS_URL, SHARDSET_STREAM, ...; docs/bus-protocol.md), DISCORD_TOKEN
(required, never logged), DISCORD_API_URL (default https://discord.com/api; the fake's in the
demo) and DEMO_HANDLER_LISTEN (host:port of `/metrics`, the library's `shardset_bus_*`; default
0.0.0.0:8080, as the Rust demo-handler). Plain HTTP with the standard library, so the library's
(nats-py, prometheus-client) are the only dependencies.

    python demo_handler.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import urllib.error
import urllib.request
from typing import Optional, Tuple

import prometheus_client

from shardset_handler import Config, Replica, serve_metrics

log = logging.getLogger("demo_handler")
DEFAULT_API_URL = "https://discord.com/api"
# Where /metrics is served: the Rust demo-handler's variable and default.
DEMO_HANDLER_LISTEN = "DEMO_HANDLER_LISTEN"
DEFAULT_LISTEN = "0.0.0.0:8080"


def reply_to(name: str, data: bytes) -> Optional[Tuple[str, str]]:
    """(channel id, message id) to answer, if this is a user's MESSAGE_CREATE."""
    if name != "MESSAGE_CREATE":
        return None
    try:
        message = json.loads(data)
        if (message.get("author") or {}).get("bot"):
            return None  # our own replies come back as MESSAGE_CREATE too
        return str(message["channel_id"]), str(message["id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class ReplyFailed(Exception):
    pass


class Replier:
    def __init__(self, api_url: str, token: str):
        self._base = api_url.rstrip("/")
        self._authorization = token if token.startswith("Bot ") else f"Bot {token}"

    def __repr__(self) -> str:  # never the token
        return f"Replier({self._base!r})"

    def _post(self, channel_id: str, message_id: str) -> None:
        body = json.dumps({
            "content": f"ack {message_id}",
            "message_reference": {"message_id": message_id},
            "nonce": message_id,
            "enforce_nonce": True,
        }).encode()
        request = urllib.request.Request(
            f"{self._base}/v10/channels/{channel_id}/messages", data=body, method="POST",
            headers={"Authorization": self._authorization, "Content-Type": "application/json",
                     "User-Agent": "DiscordBot (https://github.com/shardset/shardset-operator, 0.1)"})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                response.read()
        except urllib.error.HTTPError as e:  # the message names the status, not the token
            raise ReplyFailed(f"Discord answered {e.code}") from None
        except OSError as e:
            raise ReplyFailed(f"cannot reach {self._base}: {e.__class__.__name__}") from None

    async def handle(self, event) -> None:
        target = reply_to(event.name, event.data)
        if target is None:
            return
        # Raising makes the library redeliver the event later (same nonce).
        await asyncio.to_thread(self._post, *target)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    token = os.environ.get("DISCORD_TOKEN")
    if not token:
        raise SystemExit("DISCORD_TOKEN is not set")
    replier = Replier(os.environ.get("DISCORD_API_URL") or DEFAULT_API_URL, token)
    config = Config.from_env()
    listen = os.environ.get(DEMO_HANDLER_LISTEN) or DEFAULT_LISTEN
    # The families exactly as the Rust demo-handler serves them: no `_created` beside the counter.
    prometheus_client.disable_created_metrics()
    serve_metrics(listen)  # the global registry, where the replica's metrics go by default
    log.info("serving /metrics on %s", listen)
    replica = await Replica.start(config, replier.handle)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: handing the partitions over")
    log.info("stopped: %s", await replica.shutdown())


if __name__ == "__main__":
    asyncio.run(main())
