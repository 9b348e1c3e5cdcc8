"""Apache Kafka's own CLI tools (kafka-topics, console producer/consumer, get-offsets) against the broker."""

from __future__ import annotations

import re

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from helpers import java_tool_argv, run_java_tool, wait_for, wait_for_topic

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell"


def topics_cli(broker, *args: str) -> str:
    return run_java_tool(TOPICS, "--bootstrap-server", broker.bootstrap, *args)


def listed_topics(broker) -> list[str]:
    return topics_cli(broker, "--list").split()


def test_kafka_topics_create_list_describe_delete(broker, topic_name):
    # Proves: kafka-topics creates a 3-partition topic, lists and describes it with a live leader, and deletes it.
    out = topics_cli(broker, "--create", "--topic", topic_name, "--partitions", "3", "--replication-factor", "1")
    assert f"Created topic {topic_name}." in out, out
    assert topic_name in listed_topics(broker)

    broker_ids = set(AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).brokers)
    # Metadata for a brand-new topic may lag its creation by a moment on Kafka; describe until led.
    def described():
        text = topics_cli(broker, "--describe", "--topic", topic_name)
        rows = re.findall(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)", text)
        return text if len(rows) == 3 and all(int(leader) in broker_ids for _, leader, _ in rows) else None

    text = wait_for(described, timeout_s=60, what="describe with 3 led partitions")
    assert re.search(rf"Topic: {re.escape(topic_name)}\s+TopicId: \S+\s+PartitionCount: 3\s+ReplicationFactor: 1", text), text
    rows = re.findall(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]+)", text)
    assert sorted(int(p) for p, *_ in rows) == [0, 1, 2], text
    for _, leader, replicas, isr in rows:
        assert replicas == leader and isr == leader, text

    topics_cli(broker, "--delete", "--topic", topic_name)
    wait_for(lambda: topic_name not in listed_topics(broker), timeout_s=60, what=f"{topic_name} gone from --list")


def test_console_producer_to_console_consumer_round_trip(broker, topic_name):
    # Proves: keyed stdin lines from kafka-console-producer come back from kafka-console-consumer (no group) in order.
    topics_cli(broker, "--create", "--topic", topic_name, "--partitions", "1", "--replication-factor", "1")
    wait_for_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), topic_name, 1)
    lines = [f"user-{i % 5}:event number {i}" for i in range(200)]
    run_java_tool(
        CONSOLE_PRODUCER, "--bootstrap-server", broker.bootstrap, "--topic", topic_name,
        "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
        stdin="\n".join(lines) + "\n",
    )
    out = run_java_tool(
        CONSOLE_CONSUMER, "--bootstrap-server", broker.bootstrap, "--topic", topic_name,
        "--partition", "0", "--offset", "earliest", "--max-messages", str(len(lines)),
        "--timeout-ms", "60000", "--formatter-property", "print.key=true", "--formatter-property", "key.separator=:",
    )
    assert out.splitlines() == lines


def test_get_offsets_shows_end_offsets_after_produce(broker, topic_name):
    # Proves: kafka-get-offsets reports, per partition, the earliest offset and the end offset the producer's acks imply.
    topics_cli(broker, "--create", "--topic", topic_name, "--partitions", "3", "--replication-factor", "1")
    wait_for_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), topic_name, 3)
    acked = {0: [], 1: [], 2: []}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.partition()].append(msg.offset())

    # Uneven counts so a partition mix-up shows.
    for partition, count in ((0, 17), (1, 250), (2, 3)):
        for i in range(count):
            producer.produce(topic_name, value=f"{partition}-{i}".encode(), partition=partition, on_delivery=on_delivery)
    assert producer.flush(30) == 0

    def offsets(*extra: str) -> dict[int, int]:
        out = run_java_tool(GET_OFFSETS, "--bootstrap-server", broker.bootstrap, "--topic", topic_name, *extra)
        rows = [line.rsplit(":", 2) for line in out.splitlines() if line.startswith(f"{topic_name}:")]
        return {int(p): int(o) for _, p, o in rows}

    assert offsets() == {p: max(v) + 1 for p, v in acked.items()}
    assert offsets("--time", "latest") == {p: max(v) + 1 for p, v in acked.items()}
    assert offsets("--time", "earliest") == {p: min(v) for p, v in acked.items()}


def describe_rows(broker, topic_name: str, partitions: int):
    """`kafka-topics --describe` of one topic, once it shows `partitions` led partitions."""
    def described():
        text = topics_cli(broker, "--describe", "--topic", topic_name)
        rows = re.findall(r"Partition: (\d+)\s+Leader: (\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]+)", text)
        return (text, rows) if len(rows) == partitions else None

    return wait_for(described, timeout_s=60, what=f"describe with {partitions} led partitions")


def test_kafka_topics_alter_partitions_then_describe(broker, topic_name):
    # Proves: kafka-topics --alter --partitions grows a topic (CreatePartitions), --describe then shows
    # every partition with a leader (DescribeTopicPartitions, paged), and shrinking is refused.
    import subprocess

    topics_cli(broker, "--create", "--topic", topic_name, "--partitions", "1", "--replication-factor", "1")
    describe_rows(broker, topic_name, 1)
    topics_cli(broker, "--alter", "--topic", topic_name, "--partitions", "3")
    text, rows = describe_rows(broker, topic_name, 3)
    assert re.search(rf"Topic: {re.escape(topic_name)}\s+TopicId: \S+\s+PartitionCount: 3\s+ReplicationFactor: 1", text), text
    assert sorted(int(p) for p, *_ in rows) == [0, 1, 2], text
    for _, leader, replicas, isr in rows:
        assert replicas == leader and isr == leader, text
    # A partition limit of 1 per response makes the tool follow the cursor through every partition.
    paged = topics_cli(broker, "--describe", "--topic", topic_name, "--partition-size-limit-per-response", "1")
    assert sorted(int(p) for p in re.findall(r"Partition: (\d+)\s+Leader:", paged)) == [0, 1, 2], paged

    done = subprocess.run(
        java_tool_argv(TOPICS, "--bootstrap-server", broker.bootstrap, "--alter", "--topic", topic_name, "--partitions", "2"),
        capture_output=True, text=True, timeout=120,
    )
    assert "InvalidPartitionsException" in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert "would not be an increase" in done.stdout + done.stderr, (done.stdout, done.stderr)
    describe_rows(broker, topic_name, 3)


def test_kafka_topics_describe_topics_with_overrides(broker, topic_name):
    # Proves: --describe --topics-with-overrides lists exactly the topics whose DescribeConfigs holds a
    # config not at its default (the topic created with retention.ms, shown with it; a plain topic only
    # if the broker has a dynamic default, as Kafka 4.4's cluster-level min.insync.replicas), summary lines only.
    from confluent_kafka.admin import ConfigResource, ConfigSource

    plain = f"{topic_name}-plain"
    topics_cli(broker, "--create", "--topic", topic_name, "--partitions", "2", "--replication-factor", "1",
               "--config", "retention.ms=123456")
    topics_cli(broker, "--create", "--topic", plain, "--partitions", "1", "--replication-factor", "1")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    wait_for_topic(admin, topic_name, 2)
    wait_for_topic(admin, plain, 1)
    out = topics_cli(broker, "--describe", "--topics-with-overrides")
    listed = dict(re.findall(r"Topic: (\S+)\s+TopicId: \S+\s+PartitionCount: \d+\s+ReplicationFactor: \d+\s+Configs: (\S*)", out))
    assert "retention.ms=123456" in listed.get(topic_name, "").split(","), out

    def overridden(name: str) -> bool:
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = admin.describe_configs([resource])[resource].result(timeout=30)
        return any(e.source != ConfigSource.DEFAULT_CONFIG.value for e in entries.values())

    assert (plain in listed) == overridden(plain), out
    assert overridden(topic_name)
    assert "Partition: " not in out, out
