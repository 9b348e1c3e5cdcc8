"""Where a Fetch after transactions ends, read with a raw Fetch v4 (`harness/fetch_wire.py`).

Transaction markers are stamped with the broker's clock. When the records before them carry
timestamps more than `segment.ms` (7 days) older, the marker rolls a new segment (Kafka's
`LogSegment.shouldRoll` measures a segment's age from its first batch's timestamp to the appended
batch's), and a fetch, which reads one segment, ends where the marker's segment begins. With
current timestamps nothing rolls and one fetch returns every batch, markers included.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from fetch_wire import fetch_batches
from helpers import create_topic, wait_for


def commit_then_abort(bootstrap: str, topic: str, timestamp_ms: int) -> None:
    """Partition 0: four batches (offsets 0-3), COMMIT (4), one batch (5), ABORT (6); partition 1:
    one batch (0), COMMIT (1), one batch (2), ABORT (3). Every record stamped `timestamp_ms`."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"fetch-{topic}", "linger.ms": 0})
    producer.init_transactions(60)
    producer.begin_transaction()
    for i in range(4):
        producer.produce(topic, value=f"a0-{i}", partition=0, timestamp=timestamp_ms)
        producer.flush(30)  # one batch each
    producer.produce(topic, value="a1", partition=1, timestamp=timestamp_ms)
    producer.flush(30)
    producer.commit_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, value="b0", partition=0, timestamp=timestamp_ms)
    producer.produce(topic, value="b1", partition=1, timestamp=timestamp_ms)
    producer.flush(30)
    producer.abort_transaction(60)


def bases(bootstrap: str, topic: str, partition: int, offset: int) -> list[int]:
    return [b["base_offset"] for b in fetch_batches(bootstrap, topic, partition, offset)]


@pytest.mark.parametrize("age", ["current", "1970"])
def test_fetch_after_commit_and_abort(broker, topic_name, age):
    # Proves: with current timestamps one fetch from offset 0 returns every batch of both partitions,
    # COMMIT and ABORT markers included; with records stamped in 1970 the COMMIT marker starts a new
    # segment and a fetch from 0 ends before it, the next one (from the marker) returning the rest.
    create_topic(broker.bootstrap, topic_name, 2)
    timestamp_ms = int(time.time() * 1000) if age == "current" else 1_000
    commit_then_abort(broker.bootstrap, topic_name, timestamp_ms)
    # The markers are written after EndTxn is answered: wait for the ABORT marker on each partition.
    for partition, last in [(0, 6), (1, 3)]:
        wait_for(
            lambda: any(b["base_offset"] == last for b in fetch_batches(broker.bootstrap, topic_name, partition, last)),
            what=f"partition {partition}'s ABORT marker at {last}",
        )
    if age == "current":
        assert bases(broker.bootstrap, topic_name, 0, 0) == [0, 1, 2, 3, 4, 5, 6]
        assert bases(broker.bootstrap, topic_name, 1, 0) == [0, 1, 2, 3]
    else:
        assert bases(broker.bootstrap, topic_name, 0, 0) == [0, 1, 2, 3]
        assert bases(broker.bootstrap, topic_name, 0, 4) == [4, 5, 6]
        assert bases(broker.bootstrap, topic_name, 1, 0) == [0]
        assert bases(broker.bootstrap, topic_name, 1, 1) == [1, 2, 3]
