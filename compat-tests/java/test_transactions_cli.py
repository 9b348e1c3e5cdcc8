"""Transactions with Kafka 4.4's own Java tools: a transactional KafkaProducer (java/TxnClient.java) read by
kafka-console-consumer at both isolation levels, and kafka-transactions list | describe | describe-producers |
find-hanging | abort checked against what the test did."""

from __future__ import annotations

import subprocess
import time
import uuid

from helpers import create_topic, java_tool_argv, read_partitions, run_java_tool
from txn_client import TxnClient

CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand"
TXN_TIMEOUT_MS = 45_000  # not a default, so describe's TransactionTimeoutMs proves it came from the producer


def console_read(broker, topic: str, count: int, isolation: str) -> list[str]:
    out = run_java_tool(
        CONSOLE_CONSUMER, "--bootstrap-server", broker.bootstrap, "--topic", topic, "--partition", "0",
        "--offset", "earliest", "--max-messages", str(count), "--timeout-ms", "60000",
        "--isolation-level", isolation,
    )
    return out.splitlines()


def transactions(broker, *args: str) -> subprocess.CompletedProcess:
    argv = java_tool_argv(TRANSACTIONS, "--bootstrap-server", broker.bootstrap, *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def table(broker, *args: str) -> list[dict[str, str]]:
    """A kafka-transactions table (tab-separated, padded columns under a header row) as dicts."""
    done = transactions(broker, *args)
    assert done.returncode == 0, done
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, done
    header = [h.strip() for h in lines[0].rstrip("\t").split("\t")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.rstrip("\t").split("\t")]
        cells += [""] * (len(header) - len(cells))  # an empty last column (TopicPartitions)
        rows.append(dict(zip(header, cells)))
    return rows


def values(messages) -> list[str]:
    return [m.value().decode() for m in messages]


def test_java_transactional_producer_read_by_console_consumer(broker, topic_name):
    # Proves: kafka-console-consumer --isolation-level read_committed shows committed transactions in order, never an aborted one, and stops before an open one; read_uncommitted shows every record.
    create_topic(broker.bootstrap, topic_name, 1)
    with TxnClient(broker.bootstrap, f"console-{uuid.uuid4().hex[:8]}", TXN_TIMEOUT_MS) as client:
        client.init()
        now = int(time.time() * 1000)

        def txn(tag: str, count: int) -> list[str]:
            client.begin()
            sent = [f"{tag}-{i}" for i in range(count)]
            for value in sent:
                client.send(topic_name, 0, now, value)
            return sent

        first = txn("committed1", 5)
        client.commit()
        aborted = txn("aborted", 4)
        client.abort()
        second = txn("committed2", 3)
        client.commit()
        open_txn = txn("open", 2)

        want = first + second
        assert console_read(broker, topic_name, len(want), "read_committed") == want
        everything = first + aborted + second + open_txn
        assert console_read(broker, topic_name, len(everything), "read_uncommitted") == everything

        client.commit()
        want = first + second + open_txn
        assert console_read(broker, topic_name, len(want), "read_committed") == want


def test_kafka_transactions_cli(broker, topic_name):
    # Proves: kafka-transactions list/describe/describe-producers report the open transaction the producer made (its producer id and epoch, state, timeout, partitions, start offsets and last timestamps), find-hanging finds none while the coordinator tracks it, abort --start-offset ends it on one partition so read_committed moves past it there, and the states after the producer's commit or abort.
    create_topic(broker.bootstrap, topic_name, 2)
    node = str(broker.node_id)
    tid, other = f"cli-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    with TxnClient(broker.bootstrap, tid, TXN_TIMEOUT_MS) as client, TxnClient(broker.bootstrap, other) as done_client:
        done_client.init()
        done_client.begin()
        done_client.send(topic_name, 1, int(time.time() * 1000), "other-0")
        done_client.commit()

        client.init()
        client.begin()
        now = int(time.time() * 1000)
        committed = {p: [client.send(topic_name, p, now, f"committed-p{p}-{i}") for i in range(2)] for p in (0, 1)}
        client.commit()

        # The open transaction: record timestamps two hours back, so find-hanging's age filter
        # (by the producer's last timestamp) does not skip it.
        old = now - 2 * 3600 * 1000
        started_ms = int(time.time() * 1000)
        client.begin()
        open_offsets = {p: [client.send(topic_name, p, old + i, f"open-p{p}-{i}") for i in range(3)] for p in (0, 1)}
        sent_ms = int(time.time() * 1000)

        listed = {row["TransactionalId"]: row for row in table(broker, "list")}
        assert set(listed) >= {tid, other}, listed
        assert listed[tid]["Coordinator"] == node and listed[tid]["TransactionState"] == "Ongoing", listed[tid]
        assert listed[other]["TransactionState"] == "CompleteCommit", listed[other]
        producer_id = listed[tid]["ProducerId"]
        assert int(producer_id) >= 0 and producer_id != listed[other]["ProducerId"]
        filtered = table(broker, "list", "--transactional-id-pattern", f"^{tid}$")
        assert [row["TransactionalId"] for row in filtered] == [tid]

        [described] = table(broker, "describe", "--transactional-id", tid)
        assert described["CoordinatorId"] == node
        assert described["TransactionalId"] == tid
        assert described["ProducerId"] == producer_id
        assert described["TransactionState"] == "Ongoing"
        assert described["TransactionTimeoutMs"] == str(TXN_TIMEOUT_MS)
        assert started_ms - 1000 <= int(described["CurrentTransactionStartTimeMs"]) <= sent_ms + 1000, described
        assert set(described["TopicPartitions"].split(",")) == {f"{topic_name}-0", f"{topic_name}-1"}
        epoch = described["ProducerEpoch"]

        for p in (0, 1):
            rows = table(broker, "describe-producers", "--topic", topic_name, "--partition", str(p))
            mine = [row for row in rows if row["ProducerId"] == producer_id]
            assert len(mine) == 1, rows
            assert mine[0]["ProducerEpoch"] == epoch, (mine, described)
            assert mine[0]["CurrentTransactionStartOffset"] == str(open_offsets[p][0]), (mine, open_offsets)
            assert mine[0]["LastTimestamp"] == str(old + 2), mine
            assert int(mine[0]["LastSequence"]) >= 2, mine

        hanging = table(broker, "find-hanging", "--broker-id", node)
        assert hanging == [], f"an open transaction its coordinator tracks is not hanging: {hanging}"

        done = transactions(broker, "abort", "--topic", topic_name, "--partition", "0",
                            "--start-offset", str(open_offsets[0][0]))
        assert done.returncode == 0, done
        [p0] = [row for row in table(broker, "describe-producers", "--topic", topic_name, "--partition", "0")
                if row["ProducerId"] == producer_id]
        assert p0["CurrentTransactionStartOffset"] == "None", p0
        rc = read_partitions(broker.bootstrap, topic_name, [0, 1], extra={"isolation.level": "read_committed"})
        assert values(rc[0]) == ["committed-p0-0", "committed-p0-1"]
        ru = read_partitions(broker.bootstrap, topic_name, [0], extra={"isolation.level": "read_uncommitted"})
        assert values(ru[0]) == ["committed-p0-0", "committed-p0-1", "open-p0-0", "open-p0-1", "open-p0-2"]
        assert [m.offset() for m in ru[0]] == committed[0] + open_offsets[0]

        missing = transactions(broker, "abort", "--topic", topic_name, "--partition", "0",
                               "--start-offset", str(open_offsets[0][0]))
        assert missing.returncode != 0
        assert (f"Could not find any open transactions starting at offset {open_offsets[0][0]} "
                f"on partition {topic_name}-0") in missing.stderr, missing

        client.abort()
        [after] = table(broker, "describe", "--transactional-id", tid)
        assert after["TransactionState"] == "CompleteAbort", after
        assert after["TopicPartitions"] == "", after
        rc = read_partitions(broker.bootstrap, topic_name, [0, 1], extra={"isolation.level": "read_committed"})
        assert values(rc[0]) == ["committed-p0-0", "committed-p0-1"]
        assert values(rc[1]) == ["other-0", "committed-p1-0", "committed-p1-1"]

    unknown = transactions(broker, "describe", "--transactional-id", "no-such-transactional-id")
    assert unknown.returncode != 0
    assert "Failed to describe transaction state of transactional-id `no-such-transactional-id`" in unknown.stderr
