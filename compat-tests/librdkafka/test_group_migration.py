"""Online migration of a live consumer group between the classic and the consumer protocol
(KIP-848, `group.consumer.migration.policy=bidirectional`, Kafka 4.x's default), seen by
confluent-kafka consumers: a classic member keeps consuming while a consumer-protocol member
joins (upgrade) and after it leaves (downgrade)."""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient
from group_helpers import (
    CONSUMER_GROUP_BROKER_CONFIG,
    Consumers,
    assigned_partitions,
    poll_messages,
    poll_until,
    produce,
)
from helpers import create_topic

PARTITIONS = 6


def group_type(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return described.type


def owned_by_partition(got, members) -> dict[int, set[int]]:
    """{partition: indexes of the consumers that received its messages}."""
    owners: dict[int, set[int]] = {}
    for i in range(len(members)):
        for m in got[i]:
            owners.setdefault(m.partition(), set()).add(i)
    return owners


@pytest.mark.broker_config(CONSUMER_GROUP_BROKER_CONFIG)
@pytest.mark.parametrize("strategy", ["roundrobin", "range", "cooperative-sticky"])
def test_classic_group_upgrades_and_downgrades_while_consuming(broker, topic_name, strategy):
    # Proves: a consumer-protocol member joining a live classic group turns it into a consumer
    # group in which the classic member keeps its JoinGroup/SyncGroup protocol; the partitions
    # split disjointly and every record reaches exactly one member; when the consumer-protocol
    # member leaves, the group is classic again and the classic member owns everything.
    group = f"migrate-{strategy}-{topic_name}"
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    everything = set(range(PARTITIONS))
    with Consumers(broker.bootstrap, group) as members:
        classic = members.new(**{"group.protocol": "classic", "partition.assignment.strategy": strategy})
        classic.subscribe([topic_name])
        poll_until([classic], lambda: assigned_partitions(classic) == everything, what="the classic member owns every partition")
        assert group_type(broker.bootstrap, group) == ConsumerGroupType.CLASSIC

        modern = members.new(**{"group.protocol": "consumer"})
        modern.subscribe([topic_name])

        def split():
            a, b = assigned_partitions(classic), assigned_partitions(modern)
            return len(a) == len(b) == PARTITIONS // 2 and not (a & b) and a | b == everything

        early = poll_until([classic, modern], split, what="both members own half of the partitions")
        assert not any(early.values()), "nothing was produced yet"
        assert group_type(broker.bootstrap, group) == ConsumerGroupType.CONSUMER

        produced = produce(broker.bootstrap, topic_name, {p: 4 for p in everything}, tag="upgraded")
        got = poll_messages([classic, modern], 4 * PARTITIONS, settle_s=1.0)
        owners = owned_by_partition(got, [classic, modern])
        assert all(len(o) == 1 for o in owners.values()), owners
        received = sorted((m.partition(), m.offset()) for i in got for m in got[i])
        assert received == sorted((p, off) for p, recs in produced.items() for off, _ in recs)
        classic.commit(asynchronous=False)
        modern.commit(asynchronous=False)

        members.close(modern)
        poll_until([classic], lambda: assigned_partitions(classic) == everything, what="the classic member owns every partition again")
        assert group_type(broker.bootstrap, group) == ConsumerGroupType.CLASSIC

        more = produce(broker.bootstrap, topic_name, {p: 2 for p in everything}, tag="downgraded")
        got = poll_messages([classic], 2 * PARTITIONS, settle_s=1.0)
        # Both members committed what they consumed, so the classic member resumes every
        # partition (its own and those it takes over) exactly where the group left off.
        got_values = sorted(m.value().decode() for m in got[0])
        assert got_values == sorted(v for recs in more.values() for _, v in recs)
