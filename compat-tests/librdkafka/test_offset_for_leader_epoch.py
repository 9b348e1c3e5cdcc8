"""librdkafka validates a position that carries a leader epoch with OffsetForLeaderEpoch (KIP-320)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from helpers import create_topic

TIMEOUT_S = 30


def produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + count):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0


def consume(consumer: Consumer, count: int, timeout_s: float = TIMEOUT_S) -> list[tuple[int, int | None]]:
    got: list[tuple[int, int | None]] = []
    deadline = time.time() + timeout_s
    while len(got) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        got.append((message.offset(), message.leader_epoch()))
    return got


def consumer_for(broker, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })


def test_position_with_leader_epoch_is_validated_and_truncation_detected(broker, topic_name):
    # Proves: a position assigned with its leader epoch is checked with OffsetForLeaderEpoch: one
    # inside the epoch is kept (consumption starts there), and one past the end of its epoch is
    # taken for a truncated log, so the consumer moves to the epoch's end offset (not to the
    # auto.offset.reset position, where an out-of-range fetch would send it).
    create_topic(broker.bootstrap, topic_name, 1)
    produce(broker.bootstrap, topic_name, 10)

    consumer = consumer_for(broker, f"{topic_name}-in")
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    [(_, epoch)] = consume(consumer, 1)
    assert epoch is not None and epoch >= 0
    consumer.assign([TopicPartition(topic_name, 0, 3, leader_epoch=epoch)])
    assert [offset for offset, _ in consume(consumer, 3)] == [3, 4, 5]
    consumer.close()

    consumer = consumer_for(broker, f"{topic_name}-past")
    consumer.assign([TopicPartition(topic_name, 0, 50, leader_epoch=epoch)])
    # Give the validation a moment before new records arrive, then expect reading at the end of
    # the epoch: the records produced now, at offsets 10 and 11.
    assert consume(consumer, 1, timeout_s=3) == []
    produce(broker.bootstrap, topic_name, 2, start=10)
    assert [offset for offset, _ in consume(consumer, 2)] == [10, 11]
    consumer.close()
