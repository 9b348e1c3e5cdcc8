"""librdkafka (confluent-kafka) produces and reads back 100k records per compression codec."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from helpers import create_topic, read_partitions

RECORD_COUNT = 100_000
PARTITION_COUNT = 3


def payload(i: int) -> bytes:
    # Unique prefix for identity, then a repetitive tail so every codec has something to compress.
    return f"{i:06d}|".encode() + f"runnel-compat-{i % 97:02d} ".encode() * 6


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_read_back_every_record_once_in_order(broker, topic_name, codec):
    # Proves: 100k records compressed with `codec` are acked, then served back exactly once, in order, at the acked offsets.
    create_topic(broker.bootstrap, topic_name, PARTITION_COUNT)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            "acks": "all",
            # Kafka can refuse the first produce to a new topic (NOT_LEADER) even after Metadata named a
            # leader; only the idempotent producer keeps a retried batch in order (a single request in
            # flight does not: seen reordered on Kafka 4.1). Big batches keep this fast.
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": RECORD_COUNT * 2,
        }
    )
    acked = {}  # record index -> (partition, offset) as the delivery report told us
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[int(msg.value()[:6])] = (msg.partition(), msg.offset())

    for i in range(RECORD_COUNT):
        producer.produce(topic_name, value=payload(i), partition=i % PARTITION_COUNT, on_delivery=on_delivery)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "records still queued after flush"
    assert errors == []
    assert len(acked) == RECORD_COUNT

    by_partition = read_partitions(broker.bootstrap, topic_name, range(PARTITION_COUNT))

    for p in range(PARTITION_COUNT):
        produced = [i for i in range(RECORD_COUNT) if i % PARTITION_COUNT == p]
        # What the producer was told: within one partition, acked offsets follow produce order.
        acked_offsets = [acked[i][1] for i in produced]
        assert all(acked[i][0] == p for i in produced)
        assert acked_offsets == sorted(set(acked_offsets)), f"partition {p}: acked offsets not increasing"
        messages = by_partition[p]
        assert len(messages) == len(produced), f"partition {p}: read {len(messages)}, produced {len(produced)}"
        # Compare as whole lists so a mismatch shows the first differing index.
        assert [m.value() for m in messages] == [payload(i) for i in produced], f"partition {p}: payloads differ"
        assert [m.offset() for m in messages] == acked_offsets, f"partition {p}: offsets differ from acks"
