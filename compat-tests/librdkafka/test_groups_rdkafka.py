"""confluent-kafka (librdkafka) consumer groups: commit and resume, cooperative-sticky rebalances, KIP-848."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from group_helpers import (
    CLASSIC_GROUP_BROKER_CONFIG,
    CONSUMER_GROUP_BROKER_CONFIG,
    Consumers,
    assigned_partitions,
    committed_offsets,
    poll_messages,
    poll_until,
    produce,
)
from helpers import create_topic


def by_partition(messages) -> dict[int, list[tuple[int, str]]]:
    out: dict[int, list[tuple[int, str]]] = {}
    for m in messages:
        out.setdefault(m.partition(), []).append((m.offset(), m.value().decode()))
    return out


def all_messages(got: dict[int, list]) -> list:
    return [m for msgs in got.values() for m in msgs]


@pytest.mark.broker_config(CLASSIC_GROUP_BROKER_CONFIG)
def test_subscribe_commit_close_resume(broker, topic_name):
    # Proves: offsets committed synchronously by one member are where a new member of the same group resumes, with nothing re-delivered or lost.
    group = f"resume-{topic_name}"
    create_topic(broker.bootstrap, topic_name, 3)
    first = produce(broker.bootstrap, topic_name, {0: 20, 1: 7, 2: 13}, tag="first")

    with Consumers(broker.bootstrap, group) as members:
        resume_at_committed(broker, topic_name, members, first)


def resume_at_committed(broker, topic_name, members, first):
    partitions = range(3)
    # Member 1 reads everything, but commits only part of each partition (offset after a chosen message).
    c1 = members.new()
    c1.subscribe([topic_name])
    got = poll_messages([c1], sum(len(v) for v in first.values()), settle_s=1.0)
    read = by_partition(all_messages(got))
    assert read == first, "member 1 must read each partition once, in order, as acked"
    keep = {0: 5, 1: 0, 2: 13}  # how many records of each partition count as processed
    commit = [TopicPartition(topic_name, p, first[p][keep[p] - 1][0] + 1 if keep[p] else first[p][0][0]) for p in partitions]
    c1.commit(offsets=commit, asynchronous=False)
    expected_committed = {tp.partition: tp.offset for tp in commit}
    assert committed_offsets(c1, topic_name, partitions) == expected_committed
    members.close(c1)

    second = produce(broker.bootstrap, topic_name, {0: 4, 1: 4, 2: 4}, tag="second")

    # Member 2 (same group, new instance) starts exactly at the committed offsets.
    c2 = members.new()
    assert committed_offsets(c2, topic_name, partitions) == expected_committed
    c2.subscribe([topic_name])
    want = {p: first[p][keep[p]:] + second[p] for p in partitions}
    got = poll_messages([c2], sum(len(v) for v in want.values()), settle_s=1.0)
    assert by_partition(all_messages(got)) == {p: v for p, v in want.items() if v}
    c2.commit(asynchronous=False)  # the current positions: everything consumed
    assert committed_offsets(c2, topic_name, partitions) == {p: want[p][-1][0] + 1 for p in partitions}
    members.close(c2)

    third = produce(broker.bootstrap, topic_name, {0: 1, 1: 1, 2: 1}, tag="third")
    c3 = members.new()
    c3.subscribe([topic_name])
    got = poll_messages([c3], 3, settle_s=1.0)
    assert by_partition(all_messages(got)) == third


@pytest.mark.broker_config(CLASSIC_GROUP_BROKER_CONFIG)
def test_cooperative_sticky_incremental_rebalance(broker, topic_name):
    # Proves: with cooperative-sticky, a joining member takes partitions through incremental revoke/assign callbacks, the first member keeps the rest, no partition has two owners at once, and the leaver's partitions go back incrementally.
    n = 6
    group = f"coop-{topic_name}"
    create_topic(broker.bootstrap, topic_name, n)
    owner: dict[int, str] = {}
    events: list[tuple[str, str, list[int]]] = []

    def callbacks(name):
        def on_assign(consumer, tps):
            ps = sorted(tp.partition for tp in tps)
            events.append((name, "assign", ps))
            for p in ps:
                assert p not in owner, f"{name} assigned partition {p} while {owner[p]} still owns it"
                owner[p] = name

        def on_revoke(consumer, tps):
            ps = sorted(tp.partition for tp in tps)
            events.append((name, "revoke", ps))
            for p in ps:
                assert owner.get(p) == name, f"{name} revoked {p} owned by {owner.get(p)}"
                del owner[p]

        return {"on_assign": on_assign, "on_revoke": on_revoke}

    conf = {"partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 10000, "heartbeat.interval.ms": 500}
    with Consumers(broker.bootstrap, group, **conf) as members:
        cooperative_rebalances(broker, topic_name, n, members, owner, events, callbacks)


def cooperative_rebalances(broker, topic_name, n, members, owner, events, callbacks):
    a = members.new()
    a.subscribe([topic_name], **callbacks("a"))
    poll_until([a], lambda: len(owner) == n, what="a owns every partition")
    assert assigned_partitions(a) == set(range(n))

    b = members.new()
    b.subscribe([topic_name], **callbacks("b"))

    def split():
        pa, pb = assigned_partitions(a), assigned_partitions(b)
        return pa and pb and not (pa & pb) and pa | pb == set(range(n)) and len(owner) == n

    poll_until([a, b], split, what="a and b split the partitions")
    pa, pb = assigned_partitions(a), assigned_partitions(b)
    assert {p for p, o in owner.items() if o == "a"} == pa
    assert {p for p, o in owner.items() if o == "b"} == pb
    # Incremental: a gave up exactly what b got and never had its whole assignment revoked.
    a_revoked = [p for name, kind, ps in events if name == "a" and kind == "revoke" for p in ps]
    assert sorted(a_revoked) == sorted(pb), events
    assert ("a", "revoke", list(range(n))) not in events, events
    b_assigned = [p for name, kind, ps in events if name == "b" and kind == "assign" for p in ps]
    assert sorted(b_assigned) == sorted(pb), events

    # Each member is fetching what it owns: records produced now arrive at their partition's owner only.
    produced = produce(broker.bootstrap, topic_name, {p: 3 for p in range(n)})
    got = poll_messages([a, b], 3 * n, settle_s=1.0)
    assert {m.partition() for m in got[0]} <= pa and {m.partition() for m in got[1]} <= pb
    assert by_partition(got[0] + got[1]) == produced

    # b leaves: a gets b's partitions added, without losing its own.
    mark = len(events)
    members.close(b)
    poll_until([a], lambda: assigned_partitions(a) == set(range(n)), what="a owns every partition again")
    after = events[mark:]
    assert ("a", "assign", sorted(pb)) in after, after
    assert not [e for e in after if e[0] == "a" and e[1] == "revoke" and set(e[2]) & pa], after


@pytest.mark.broker_config(CONSUMER_GROUP_BROKER_CONFIG)
def test_kip848_consumer_protocol_split_commit_resume(broker, topic_name):
    # Proves: with group.protocol=consumer (KIP-848) two members split the partitions disjointly, each consumes only its own, and committed offsets are where a later member resumes.
    n = 4
    partitions = range(n)
    group = f"kip848-{topic_name}"
    create_topic(broker.bootstrap, topic_name, n)
    with Consumers(broker.bootstrap, group, **{"group.protocol": "consumer"}) as members:
        kip848_split_commit_resume(broker, topic_name, partitions, members)


def kip848_split_commit_resume(broker, topic_name, partitions, members):
    n = len(partitions)
    a = members.new()
    b = members.new()
    a.subscribe([topic_name])
    poll_until([a], lambda: assigned_partitions(a) == set(partitions), what="a owns every partition")
    b.subscribe([topic_name])

    def split():
        pa, pb = assigned_partitions(a), assigned_partitions(b)
        return pa and pb and not (pa & pb) and pa | pb == set(partitions)

    early = poll_until([a, b], split, what="a and b split the partitions")
    assert not all_messages(early), "nothing was produced yet"
    pa, pb = assigned_partitions(a), assigned_partitions(b)

    produced = produce(broker.bootstrap, topic_name, {p: 5 + p for p in partitions}, tag="first")
    got = poll_messages([a, b], sum(len(v) for v in produced.values()), settle_s=1.0)
    assert {m.partition() for m in got[0]} <= pa and {m.partition() for m in got[1]} <= pb
    assert by_partition(got[0] + got[1]) == produced
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)
    end = {p: produced[p][-1][0] + 1 for p in partitions}
    assert committed_offsets(a, topic_name, partitions) == end
    members.close(a)
    members.close(b)

    more = produce(broker.bootstrap, topic_name, {p: 2 for p in partitions}, tag="second")
    c = members.new()
    assert committed_offsets(c, topic_name, partitions) == end
    c.subscribe([topic_name])
    got = poll_messages([c], 2 * n, settle_s=1.0)
    assert by_partition(got[0]) == more


@pytest.mark.broker_config(CONSUMER_GROUP_BROKER_CONFIG)
def test_kip848_group_takes_partitions_added_to_its_topic(broker, topic_name):
    # Proves: with group.protocol=consumer the coordinator notices partitions added to a subscribed topic
    # (CreatePartitions): the running members are assigned the new ones, disjointly, and read what is
    # produced to them.
    from confluent_kafka.admin import AdminClient, NewPartitions

    group = f"kip848-grow-{topic_name}"
    create_topic(broker.bootstrap, topic_name, 2)
    with Consumers(broker.bootstrap, group, **{"group.protocol": "consumer"}) as members:
        a = members.new()
        b = members.new()
        a.subscribe([topic_name])
        b.subscribe([topic_name])

        def split(n):
            def done():
                pa, pb = assigned_partitions(a), assigned_partitions(b)
                return pa and pb and not (pa & pb) and pa | pb == set(range(n))
            return done

        poll_until([a, b], split(2), what="a and b split 2 partitions")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(timeout=30)
        early = poll_until([a, b], split(4), what="a and b split 4 partitions")
        assert not all_messages(early), "nothing was produced yet"
        pa, pb = assigned_partitions(a), assigned_partitions(b)
        produced = produce(broker.bootstrap, topic_name, {2: 3, 3: 4}, tag="new")
        got = poll_messages([a, b], 7, settle_s=1.0)
        assert {m.partition() for m in got[0]} <= pa and {m.partition() for m in got[1]} <= pb
        assert by_partition(got[0] + got[1]) == produced
