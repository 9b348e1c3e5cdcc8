"""Retention by time and by size, and confluent-kafka's delete_records, observed through the log start
offset (ListOffsets earliest), Fetch OFFSET_OUT_OF_RANGE with auto.offset.reset, and DeleteRecords' answers.

Segments are made small with segment.ms (segment.bytes cannot go below 1 MiB in Kafka): each record is
produced alone with a producer timestamp more than segment.ms after the previous one, so each rolls a
new segment (Kafka's rule: the incoming batch's timestamp minus the segment's first batch timestamp).
The broker runs retention every 500 ms from startup (`log.retention.check.interval.ms`,
`log.initial.task.delay.ms`, given to both targets)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import wait_for, wait_for_topic

TIMEOUT_S = 30
FAST_RETENTION = {"log.retention.check.interval.ms": 500, "log.initial.task.delay.ms": 0}


def make_topic(broker, topic: str, configs: dict) -> AdminClient:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(timeout=TIMEOUT_S)
    wait_for_topic(admin, topic, 1)
    return admin


def produce_one_by_one(broker, topic: str, timestamps_ms: list[int]) -> None:
    """One record per batch (flushed each time), with these producer timestamps."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i, ts in enumerate(timestamps_ms):
        producer.produce(topic, value=f"record-{i}".encode(), partition=0, timestamp=ts)
        assert producer.flush(TIMEOUT_S) == 0


def watermarks(broker, topic: str) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        consumer.close()


def consume_from(broker, topic: str, offset: int, count: int, reset: str = "earliest") -> list:
    """Assigns `offset` and reads `count` records; an offset out of range resets as `reset` says."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "reader",
        "enable.auto.commit": False,
        "auto.offset.reset": reset,
    })
    out = []
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + TIMEOUT_S
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=count, timeout=1.0):
                if msg.error() is None:
                    out.append(msg)
                elif msg.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error: {msg.error()}")
    finally:
        consumer.close()
    return out


@pytest.mark.broker_config(FAST_RETENTION)
def test_time_retention_deletes_expired_segments(broker, topic_name):
    # Proves: segments whose largest timestamp is older than retention.ms are deleted by the periodic check, the
    # active one stays, earliest moves to the first kept record, and a consumer at a deleted offset resets to it.
    make_topic(broker, topic_name, {"segment.ms": "100", "retention.ms": "300000"})
    now = int(time.time() * 1000)
    # Two records ten minutes old (two segments), then one from now, which rolls and stays.
    produce_one_by_one(broker, topic_name, [now - 600_000, now - 599_000, now])
    low, high = wait_for(lambda: (w := watermarks(broker, topic_name))[0] == 2 and w, timeout_s=TIMEOUT_S,
                         what="earliest offset 2 after time retention")
    assert high == 3
    # Nothing else expires: the record from now stays readable, and a reader at offset 0 resets to it.
    time.sleep(1.5)
    assert watermarks(broker, topic_name) == (2, 3)
    read = consume_from(broker, topic_name, 0, 1)
    assert [(m.offset(), m.value()) for m in read] == [(2, b"record-2")]


@pytest.mark.broker_config(FAST_RETENTION)
def test_size_retention_keeps_the_newest_segment(broker, topic_name):
    # Proves: retention.bytes deletes the oldest segments while the log stays at or above the limit; with a limit
    # of 1 byte every segment but the active one goes, whatever the batches' sizes.
    make_topic(broker, topic_name, {"segment.ms": "100", "retention.bytes": "1"})
    now = int(time.time() * 1000)
    produce_one_by_one(broker, topic_name, [now - 3000, now - 2000, now - 1000, now])
    wait_for(lambda: watermarks(broker, topic_name) == (3, 4), timeout_s=TIMEOUT_S,
             what="earliest offset 3 after size retention")
    read = consume_from(broker, topic_name, 1, 1)
    assert [(m.offset(), m.value()) for m in read] == [(3, b"record-3")]


@pytest.mark.broker_config(FAST_RETENTION)
def test_a_compact_topic_is_not_deleted_by_retention(broker, topic_name):
    # Proves: with cleanup.policy=compact, retention.ms does not delete segments (nothing moves earliest).
    make_topic(broker, topic_name, {"segment.ms": "100", "retention.ms": "1000", "cleanup.policy": "compact"})
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i, ts in enumerate([now - 600_000, now - 599_000, now]):
        producer.produce(topic_name, key=f"k{i}".encode(), value=b"v", partition=0, timestamp=ts)
        assert producer.flush(TIMEOUT_S) == 0
    # Several retention checks later, still all there.
    time.sleep(2.5)
    assert watermarks(broker, topic_name) == (0, 3)


def delete_records(admin, topic: str, offset: int, partition: int = 0):
    tp = TopicPartition(topic, partition, offset)
    return admin.delete_records([tp], operation_timeout=10)[tp].result(timeout=TIMEOUT_S)


def delete_records_error(admin, topic: str, offset: int, partition: int = 0) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        delete_records(admin, topic, offset, partition)
    return raised.value.args[0]


def test_delete_records_moves_the_low_watermark(broker, topic_name):
    # Proves: delete_records answers the new low watermark, earliest follows it, reads below it reset to it,
    # OFFSET_END deletes up to the high watermark, and an offset past it or a compact topic fail as in Kafka.
    admin = make_topic(broker, topic_name, {})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(10):
        producer.produce(topic_name, value=f"record-{i}".encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0

    assert delete_records(admin, topic_name, 4).low_watermark == 4
    assert watermarks(broker, topic_name) == (4, 10)
    assert [m.offset() for m in consume_from(broker, topic_name, 1, 2)] == [4, 5]
    # An offset below the start changes nothing and answers the current start.
    assert delete_records(admin, topic_name, 2).low_watermark == 4
    # Past the high watermark: OFFSET_OUT_OF_RANGE.
    assert delete_records_error(admin, topic_name, 11).code() == KafkaError.OFFSET_OUT_OF_RANGE
    # OFFSET_END (-1): everything below the high watermark.
    assert delete_records(admin, topic_name, OFFSET_END).low_watermark == 10
    assert watermarks(broker, topic_name) == (10, 10)

    compacted = f"{topic_name}-compact"
    make_topic(broker, compacted, {"cleanup.policy": "compact"})
    assert delete_records_error(admin, compacted, 0).code() == KafkaError.POLICY_VIOLATION
