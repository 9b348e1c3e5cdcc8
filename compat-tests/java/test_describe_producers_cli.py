"""Kafka 4.4's kafka-transactions tool against the broker: describe-producers reads a
partition's producer state (DescribeProducers v0)."""

from __future__ import annotations

from confluent_kafka import Producer
from helpers import create_topic, run_java_tool

TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"


def produce(bootstrap: str, topic: str, partition: int, count: int, idempotent: bool) -> None:
    """Produce `count` records to one partition, one request each, all acknowledged."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": idempotent}
    )
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=partition, on_delivery=on_delivery)
        producer.flush(30)
    assert producer.flush(30) == 0
    assert failures == []


def describe_producers(broker, topic: str, partition: int) -> list[dict[str, str]]:
    """kafka-transactions describe-producers, its table as one dict per producer row."""
    out = run_java_tool(
        TRANSACTIONS, "--bootstrap-server", broker.bootstrap,
        "describe-producers", "--topic", topic, "--partition", str(partition),
    )
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines, f"no header in:\n{out}"
    header, rows = lines[0], lines[1:]
    assert header == [
        "ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
        "LastTimestamp", "CurrentTransactionStartOffset",
    ], out
    return [dict(zip(header, row)) for row in rows]


def test_describe_producers(broker, topic_name):
    # An idempotent producer's 5 records to partition 0 show up as one producer at epoch 0 with
    # last sequence 4, no coordinator epoch and no open transaction; a non-idempotent producer
    # leaves partition 1 without producers.
    create_topic(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, 0, 5, idempotent=True)
    produce(broker.bootstrap, topic_name, 1, 3, idempotent=False)

    rows = describe_producers(broker, topic_name, 0)
    assert len(rows) == 1, rows
    row = rows[0]
    assert int(row["ProducerId"]) >= 0
    assert row["ProducerEpoch"] == "0"
    assert row["LatestCoordinatorEpoch"] == "-1"
    assert row["LastSequence"] == "4"
    assert int(row["LastTimestamp"]) > 1_600_000_000_000
    assert row["CurrentTransactionStartOffset"] == "None"

    assert describe_producers(broker, topic_name, 1) == []

