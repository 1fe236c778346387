"""The pure parts agree with the Rust side (the same examples as shardset_contract::bus and the
Rust library's unit tests)."""

import pytest

from shardset_handler import protocol
from shardset_handler.assignment import assigned
from shardset_handler.commands import CommandError, parse_reply
from shardset_handler.config import Config, ConfigError
from shardset_handler.event import BadMessage, parse_head
from shardset_handler.partition import retry_delay
from shardset_handler.protocol import Partition


def test_partitions_and_names_match_the_rust_side():
    guild = 41771983423143937
    assert Partition.of(guild, 16) == Partition(6)
    assert protocol.shard_of_guild(guild, 16) == 6
    assert Partition.of(None, 16).is_global
    assert list(Partition.all(2)) == [Partition(0), Partition(1), Partition(None)]
    assert protocol.default_stream_name("ns", "my.bot") == "shardset-ns-my_bot"
    assert protocol.default_subject_prefix("ns", "my.bot") == "shardset.ns.my_bot"
    s = "shardset.ns.bot"
    assert protocol.event_subject(s, Partition(7)) == "shardset.ns.bot.events.7"
    assert protocol.event_subject(s, Partition(None)) == "shardset.ns.bot.events.global"
    assert protocol.command_subject(s, 24, 5) == "shardset.ns.bot.commands.24.5"
    assert protocol.session_msg_id("abc", 42) == "s:abc:42"
    assert protocol.member_key("g", "r-1") == "g.members.r-1"
    assert protocol.owner_key("g", Partition(None)) == "g.owner.global"
    assert protocol.consumer_name("st", "g", Partition(3)) == "st-g-p3"
    assert protocol.consumer_name("st", "g", Partition(None)) == "st-g-global"
    assert protocol.handlers_bucket("st") == "st-handlers"
    assert protocol.valid_name("pod-abc_1") and not protocol.valid_name("a.b")


def test_assignment_matches_the_rust_side():
    members = ["c", "a", "b"]
    assert assigned(members, "a", 4) == {Partition(0), Partition(3)}
    assert assigned(members, "b", 4) == {Partition(1), Partition(None)}
    assert assigned(members, "c", 4) == {Partition(2)}
    assert assigned(members, "z", 4) == set()


def test_parse_head_reads_and_refuses():
    headers = {"Shardset-Event": "MESSAGE_CREATE", "Shardset-Shard": "3", "Shardset-Total": "16",
               "Shardset-Seq": "42", "Shardset-Guild": "41771983423143937"}
    head = parse_head(headers, b'{"id":"1"}')
    assert (head.name, head.shard, head.total, head.seq, head.guild) == ("MESSAGE_CREATE", 3, 16, 42, 41771983423143937)
    with pytest.raises(BadMessage) as e:
        parse_head({k: v for k, v in headers.items() if k != "Shardset-Seq"}, b"{}")
    assert e.value.label == "missing_header"
    with pytest.raises(BadMessage) as e:
        parse_head(dict(headers, **{"Shardset-Shard": "three"}), b"{}")
    assert e.value.label == "bad_number"
    with pytest.raises(BadMessage) as e:
        parse_head(headers, b"{not json")
    assert e.value.label == "not_json"
    with pytest.raises(BadMessage):
        parse_head(None, b"")


def test_config_from_env_and_replies():
    config = Config.from_env({"NATS_URL": "nats://u:secret@nats:4222", "SHARDSET_STREAM": "s",
                              "POD_NAME": "demo-handler-7f9c"})
    assert config.group == "default" and config.replica.startswith("demo-handler-7f9c-")
    assert "secret" not in repr(config)
    with pytest.raises(ConfigError):
        Config.from_env({"NATS_URL": "nats://x"})
    with pytest.raises(ConfigError):
        Config.from_env({"NATS_URL": "nats://x", "SHARDSET_STREAM": "s", "NATS_USER": "u"})
    assert parse_reply(b'{"ok":true,"chunks":[{"chunk_index":0}]}') == [{"chunk_index": 0}]
    with pytest.raises(CommandError) as e:
        parse_reply(b'{"ok":false,"error":{"kind":"rate_limited","message":"m","retryAfterMs":1500}}')
    assert (e.value.kind, e.value.retry_after_s) == ("rate_limited", 1.5)
    assert retry_delay(1.0, 1) == 1.0 and retry_delay(1.0, 4) == 8.0 and retry_delay(1.0, 99) == 30.0
