"""Handler services of the bot tier in Python (docs/bus-protocol.md): consume a bot's dispatches
from NATS JetStream per partition, in order, sharing the partitions with the group's other
replicas (Python or Rust, the same ownership protocol), and send gateway commands back.

    import asyncio
    from shardset_handler import Config, Replica

    async def handle(event):
        if event.name == "MESSAGE_CREATE":
            message = event.json()          # the raw `d`, parsed
            ...                             # raise to have the event redelivered later

    async def main():
        replica = await Replica.start(Config.from_env(), handle)
        ...                                 # until SIGTERM
        await replica.shutdown()            # hand the partitions over cleanly

Files: protocol (names of the wire format), assignment, event, config, commands, leases (the
ownership bucket's records), partition (one partition's consumption), backlog (an owned
partition's backlog for the metrics), metrics (the Prometheus metrics, the Rust library's
names), replica (the loop).
"""

from .commands import CommandError, Commands
from .config import Config, ConfigError
from .event import BadMessage, Event
from .metrics import Metrics, serve_metrics
from .protocol import Partition
from .replica import NotABusStream, Replica

__all__ = [
    "BadMessage",
    "CommandError",
    "Commands",
    "Config",
    "ConfigError",
    "Event",
    "Metrics",
    "NotABusStream",
    "Partition",
    "Replica",
    "serve_metrics",
]
