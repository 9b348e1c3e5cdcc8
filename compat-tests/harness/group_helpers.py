"""Helpers for the consumer-group compat tests (importable as `group_helpers`; conftest puts harness/ on sys.path).

Everything here reports what the clients saw (acked offsets, delivered messages, committed offsets);
tests compare those with each other, never with numbers the broker is assumed to compute.
"""

from __future__ import annotations

import time

from helpers import wait_for

# Classic groups: the Kafka target already runs with group.initial.rebalance.delay.ms=0 (harness/broker.py);
# saying it per test too keeps a runnel target from waiting its 3 s default before the first assignment.
CLASSIC_GROUP_BROKER_CONFIG = {"group.initial.rebalance.delay.ms": 0}

# KIP-848 groups: members learn of a new target assignment on their next heartbeat, every
# group.consumer.heartbeat.interval.ms (default 5 s, floor 5 s); 500 ms keeps a two-member split to seconds.
CONSUMER_GROUP_BROKER_CONFIG = {
    **CLASSIC_GROUP_BROKER_CONFIG,
    "group.consumer.heartbeat.interval.ms": 500,
    "group.consumer.min.heartbeat.interval.ms": 500,
}


def produce(bootstrap: str, topic: str, per_partition: dict[int, int], tag: str = "m") -> dict[int, list[tuple[int, str]]]:
    """Produce `count` records to each partition (acks=all); returns {partition: [(acked offset, value), ...]}.

    Values are `"{tag}-p{partition}-{i}"`, unique per call as long as tags differ.
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked: dict[int, list[tuple[int, str]]] = {p: [] for p in per_partition}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.partition()].append((msg.offset(), msg.value().decode()))

    for partition, count in per_partition.items():
        for i in range(count):
            value = f"{tag}-p{partition}-{i}"
            producer.produce(topic, key=value, value=value, partition=partition, on_delivery=on_delivery)
    assert producer.flush(60) == 0, "producer did not drain"
    assert not errors, errors
    for partition in acked:
        acked[partition].sort()
        assert len(acked[partition]) == per_partition[partition]
    return acked


def rd_consumer(bootstrap: str, group: str, **extra):
    """A confluent-kafka group consumer: manual commits, earliest on no committed offset."""
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def poll_messages(consumers, want: int, timeout_s: float = 60.0, settle_s: float = 0.0):
    """Poll every consumer in turn until `want` messages arrived in total (then `settle_s` more).

    Returns {index of consumer: [Message, ...]}; fails on a consume error or when fewer arrive in time.
    """
    got = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    settle_until = None
    while True:
        now = time.monotonic()
        total = sum(len(v) for v in got.values())
        if total >= want and settle_until is None:
            settle_until = now + settle_s
        if settle_until is not None and now >= settle_until:
            return got
        if now > deadline:
            counts = {i: len(v) for i, v in got.items()}
            raise AssertionError(f"only {total} of {want} messages within {timeout_s}s (per consumer {counts})")
        for i, c in enumerate(consumers):
            for msg in c.consume(num_messages=1000, timeout=0.1):
                err = msg.error()
                assert err is None, f"consumer {i}: {err}"
                got[i].append(msg)


def poll_until(consumers, predicate, timeout_s: float = 60.0, what: str = "condition"):
    """Poll every consumer (serving rebalance callbacks) until `predicate()`; messages are collected and returned."""
    got = {i: [] for i in range(len(consumers))}

    def step():
        for i, c in enumerate(consumers):
            for msg in c.consume(num_messages=1000, timeout=0.1):
                assert msg.error() is None, f"consumer {i}: {msg.error()}"
                got[i].append(msg)
        return predicate()

    wait_for(step, timeout_s=timeout_s, interval_s=0.0, what=what)
    return got


def assigned_partitions(consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def committed_offsets(consumer, topic: str, partitions) -> dict[int, int]:
    """OffsetFetch through librdkafka: {partition: committed offset} (negative = none)."""
    from confluent_kafka import TopicPartition

    result = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    for tp in result:
        assert tp.error is None, tp.error
    return {tp.partition: tp.offset for tp in result}


class Consumers:
    """Creates confluent-kafka group consumers and closes whichever are still open on exit (also on failure)."""

    def __init__(self, bootstrap: str, group: str, **defaults):
        self.bootstrap, self.group, self.defaults = bootstrap, group, defaults
        self.open = []

    def new(self, **extra):
        c = rd_consumer(self.bootstrap, self.group, **{**self.defaults, **extra})
        self.open.append(c)
        return c

    def close(self, c) -> None:
        """Leave the group now (LeaveGroup / final heartbeat), as an application shutting down would."""
        self.open.remove(c)
        c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        while self.open:
            c = self.open.pop()
            try:
                c.close()
            except Exception:  # noqa: BLE001 - cleanup must not mask the test's own failure
                pass
