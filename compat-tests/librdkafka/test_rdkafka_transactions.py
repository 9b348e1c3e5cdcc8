"""Transactional producers, librdkafka (transaction version 1) and Java kafka-clients 4.4 (version 2
where the cluster finalized it): what read_committed and read_uncommitted consumers see."""

from __future__ import annotations

from confluent_kafka import Producer

from helpers import create_topic, java_tool_argv, read_partitions

import subprocess
from pathlib import Path

JAVA_PRODUCER = Path(__file__).resolve().parent.parent / "java" / "TxnProducer.java"


def values(bootstrap, topic, partitions, isolation):
    got = read_partitions(bootstrap, topic, range(partitions), extra={"isolation.level": isolation})
    return {p: [m.value().decode() for m in msgs] for p, msgs in got.items()}


def expected(tags, partitions):
    return {p: [f"{tag}-p{p}-{i}" for tag in tags for i in range(2)] for p in range(partitions)}


def run_librdkafka_transactions(bootstrap, topic, partitions, steps):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"rd-{topic}"})
    producer.init_transactions(60)
    for tag, commit in steps:
        producer.begin_transaction()
        for p in range(partitions):
            for i in range(2):
                producer.produce(topic, value=f"{tag}-p{p}-{i}", partition=p)
        producer.flush(30)
        if commit:
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)


def test_librdkafka_commit_and_abort(broker, topic_name):
    # Proves: a librdkafka transactional producer's committed transactions are read by read_committed
    # consumers exactly, in order, its aborted one is skipped there and delivered to read_uncommitted ones.
    create_topic(broker.bootstrap, topic_name, 2)
    run_librdkafka_transactions(
        broker.bootstrap, topic_name, 2, [("first", True), ("dropped", False), ("second", True)]
    )
    assert values(broker.bootstrap, topic_name, 2, "read_committed") == expected(["first", "second"], 2)
    assert values(broker.bootstrap, topic_name, 2, "read_uncommitted") == expected(
        ["first", "dropped", "second"], 2
    )


def test_java_producer_commit_and_abort(broker, topic_name):
    # Proves: the Java producer (kafka-clients 4.4, which uses transaction version 2 when the cluster
    # finalized it) commits and aborts as read_committed and read_uncommitted consumers see it.
    create_topic(broker.bootstrap, topic_name, 2)
    argv = java_tool_argv(
        "unused", broker.bootstrap, topic_name, "2", f"java-{topic_name}", "first:commit", "dropped:abort", "second:commit"
    )
    # Run the single-file source in place of a main class: `java -cp LIBS TxnProducer.java ARGS`.
    argv[argv.index("unused")] = str(JAVA_PRODUCER)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "DONE" in done.stdout, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert values(broker.bootstrap, topic_name, 2, "read_committed") == expected(["first", "second"], 2)
    assert values(broker.bootstrap, topic_name, 2, "read_uncommitted") == expected(
        ["first", "dropped", "second"], 2
    )


def test_kafka_transactions_cli_lists_and_describes(broker, topic_name):
    # Proves: kafka-transactions list and describe (ListTransactions, FindCoordinator key type 1,
    # DescribeTransactions) report a committed transactional id with its state and topic-free
    # completion, as Kafka's tool prints them.
    from helpers import run_java_tool, wait_for

    create_topic(broker.bootstrap, topic_name, 1)
    transactional_id = f"cli-{topic_name}"
    argv = java_tool_argv("unused", broker.bootstrap, topic_name, "1", transactional_id, "only:commit")
    argv[argv.index("unused")] = str(JAVA_PRODUCER)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "DONE" in done.stdout, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    tool = "org.apache.kafka.tools.TransactionsCommand"

    def listed():
        out = run_java_tool(tool, "--bootstrap-server", broker.bootstrap, "list")
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        return [r for r in rows if r[0] == transactional_id]

    rows = wait_for(listed, what=f"{transactional_id} in kafka-transactions list")
    # Columns: TransactionalId, Coordinator, ProducerId, TransactionState.
    assert rows[0][3] == "CompleteCommit", rows

    out = run_java_tool(tool, "--bootstrap-server", broker.bootstrap, "describe", "--transactional-id", transactional_id)
    header, row = [line.split("\t") for line in out.splitlines() if line.strip()][:2]
    # An empty last column (no partitions) may lose its trailing tab.
    described = {h.strip(): (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
    assert described["TransactionalId"] == transactional_id
    assert described["TransactionState"] == "CompleteCommit"
    assert described["TopicPartitions"] == ""
    assert int(described["ProducerId"]) >= 0
