"""Committed group offsets survive a broker restart (clean stop and SIGKILL), for classic and KIP-848 groups."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from group_helpers import CONSUMER_GROUP_BROKER_CONFIG, Consumers, committed_offsets, poll_messages, produce
from helpers import create_topic

PROTOCOL_CONF = {"classic": {}, "consumer": {"group.protocol": "consumer"}}


@pytest.mark.broker_config(CONSUMER_GROUP_BROKER_CONFIG)
@pytest.mark.parametrize("how", ["stop", "kill9"])
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_committed_offsets_survive_broker_restart(broker, topic_name, protocol, how):
    # Proves: offsets a group member committed (OffsetCommit acked) are what OffsetFetch returns after the broker restarts, and a member resumes there.
    partitions = range(3)
    group = f"restart-{protocol}-{topic_name}"
    create_topic(broker.bootstrap, topic_name, 3)
    produced = produce(broker.bootstrap, topic_name, {0: 6, 1: 9, 2: 4}, tag="before")
    with Consumers(broker.bootstrap, group, **PROTOCOL_CONF[protocol]) as members:
        c1 = members.new()
        c1.subscribe([topic_name])
        got = poll_messages([c1], sum(len(v) for v in produced.values()), settle_s=0.5)
        assert len(got[0]) == sum(len(v) for v in produced.values())
        # A different point in each partition, taken from the acked offsets (none at 0, so "nothing committed" shows).
        processed = {0: 2, 1: 9, 2: 1}
        commit = [TopicPartition(topic_name, p, produced[p][processed[p] - 1][0] + 1) for p in partitions]
        c1.commit(offsets=commit, asynchronous=False)
        expected = {tp.partition: tp.offset for tp in commit}
        assert committed_offsets(c1, topic_name, partitions) == expected
        members.close(c1)

    if how == "stop":
        broker.stop()
    else:
        broker.kill9()
    broker.restart()

    with Consumers(broker.bootstrap, group, **PROTOCOL_CONF[protocol]) as members:
        c2 = members.new()
        # The coordinator may still be loading its state right after a restart; the client retries
        # (COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR) within committed()'s timeout.
        assert committed_offsets(c2, topic_name, partitions) == expected
        c2.subscribe([topic_name])
        want = {p: produced[p][processed[p]:] for p in partitions}
        got = poll_messages([c2], sum(len(v) for v in want.values()), settle_s=1.0)
        read: dict[int, list] = {}
        for m in got[0]:
            read.setdefault(m.partition(), []).append((m.offset(), m.value().decode()))
        assert read == {p: v for p, v in want.items() if v}
