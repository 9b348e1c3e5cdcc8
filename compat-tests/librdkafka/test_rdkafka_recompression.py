"""Broker-side record rules, seen by librdkafka and on the wire: recompression by the topic's
`compression.type`, LogAppendTime, `message.timestamp.before.max.ms`, and ListOffsets by
timestamp inside a compressed batch."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from fetch_wire import fetch_batches
from helpers import read_partitions, wait_for_topic

RECORDS = 2_000


def create(bootstrap: str, topic: str, config: dict) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])
    futures[topic].result(timeout=30)
    wait_for_topic(admin, topic, 1)


def produce(bootstrap: str, topic: str, values, codec: str = "none", timestamps=None) -> list:
    """Produces `values` to partition 0; returns the delivery reports (error, offset, timestamp)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 50,
            "batch.num.messages": 10_000,
            "retries": 0,
        }
    )
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.offset(), msg.timestamp()))

    for i, value in enumerate(values):
        kwargs = {"timestamp": timestamps[i]} if timestamps else {}
        producer.produce(topic, value=value, partition=0, on_delivery=on_delivery, **kwargs)
    assert producer.flush(30) == 0
    return reports


def payloads(n: int) -> list[bytes]:
    return [f"{i:06d} ".encode() + b"recompress-me " * 8 for i in range(n)]


@pytest.mark.parametrize(
    ("topic_codec", "stored"),
    [("zstd", "zstd"), ("producer", "gzip"), ("uncompressed", "none"), ("lz4", "lz4")],
)
def test_topic_compression_type_decides_the_stored_codec(broker, topic_name, topic_codec, stored):
    # Proves: a gzip producer's batches come back in the topic's codec (zstd, lz4, none), or as gzip
    # under `producer`, read off the wire; the records are intact.
    create(broker.bootstrap, topic_name, {"compression.type": topic_codec})
    values = payloads(RECORDS)
    reports = produce(broker.bootstrap, topic_name, values, codec="gzip")
    assert [r[0] for r in reports] == [None] * RECORDS
    batches = fetch_batches(broker.bootstrap, topic_name)
    assert batches, "no batch fetched"
    assert {b["codec"] for b in batches} == {stored}, batches
    assert sum(b["record_count"] for b in batches) == RECORDS
    assert batches[0]["base_offset"] == 0
    messages = read_partitions(broker.bootstrap, topic_name, [0])[0]
    assert [m.value() for m in messages] == values
    assert [m.offset() for m in messages] == list(range(RECORDS))


def test_log_append_time_is_what_consumers_and_producers_see(broker, topic_name):
    # Proves: on a LogAppendTime topic the broker's clock replaces the producer's old timestamps, for
    # the consumer and in the delivery report, and batches carry the LogAppendTime flag.
    create(broker.bootstrap, topic_name, {"message.timestamp.type": "LogAppendTime"})
    old = 1_000_000_000_000  # 2001
    before_ms = int(time.time() * 1000)
    reports = produce(broker.bootstrap, topic_name, payloads(10), codec="lz4", timestamps=[old + i for i in range(10)])
    after_ms = int(time.time() * 1000)
    assert [r[0] for r in reports] == [None] * 10
    for _, _, (ts_type, ts) in reports:
        assert ts_type == 2, "delivery report: TIMESTAMP_LOG_APPEND_TIME"
        assert before_ms - 5_000 <= ts <= after_ms + 5_000
    messages = read_partitions(broker.bootstrap, topic_name, [0])[0]
    assert len(messages) == 10
    for m in messages:
        ts_type, ts = m.timestamp()
        assert ts_type == 2, "consumer: TIMESTAMP_LOG_APPEND_TIME"
        assert before_ms - 5_000 <= ts <= after_ms + 5_000
    batches = fetch_batches(broker.bootstrap, topic_name)
    assert all(b["log_append_time"] for b in batches)
    assert all(before_ms - 5_000 <= b["max_timestamp"] <= after_ms + 5_000 for b in batches)
    # The base timestamp stays the producer's: Kafka does not rewrite v2 record deltas.
    assert batches[0]["base_timestamp"] == old


def test_a_record_older_than_before_max_ms_is_invalid_timestamp(broker, topic_name):
    # Proves: with message.timestamp.before.max.ms=1h a record 2h old is refused with INVALID_TIMESTAMP,
    # nothing of it is stored, and a current record is accepted.
    create(broker.bootstrap, topic_name, {"message.timestamp.before.max.ms": "3600000"})
    now = int(time.time() * 1000)
    reports = produce(broker.bootstrap, topic_name, [b"too-old"], timestamps=[now - 2 * 3_600_000])
    assert len(reports) == 1
    err = reports[0][0]
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    reports = produce(broker.bootstrap, topic_name, [b"fresh"], timestamps=[now])
    assert reports[0][0] is None
    assert reports[0][1] == 0, "the refused record took no offset"
    messages = read_partitions(broker.bootstrap, topic_name, [0])[0]
    assert [m.value() for m in messages] == [b"fresh"]


def test_offsets_for_times_answers_the_record_inside_a_compressed_batch(broker, topic_name):
    # Proves: ListOffsets by timestamp and by max timestamp name the record's own offset inside one
    # zstd batch, not the batch's base offset.
    create(broker.bootstrap, topic_name, {})
    base = int(time.time() * 1000) - 60_000
    reports = produce(broker.bootstrap, topic_name, payloads(10), codec="zstd", timestamps=[base + i * 10 for i in range(10)])
    assert [r[1] for r in reports] == list(range(10))
    batches = fetch_batches(broker.bootstrap, topic_name)
    assert len(batches) == 1 and batches[0]["codec"] == "zstd", batches
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic_name})
    try:
        found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 45)], timeout=10)
        assert found[0].offset == 5
        found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 90)], timeout=10)
        assert found[0].offset == 9
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic_name, 0)
    result = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)[tp].result()
    assert (result.offset, result.timestamp) == (9, base + 90)
