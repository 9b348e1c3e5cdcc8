"""librdkafka transactions (confluent-kafka): init/begin/commit/abort, send_offsets_to_transaction, read_committed.

The exactly-once loop librdkafka documents: a group consumer (read_committed, no auto commit) feeds a
transactional producer; each batch's outputs and the consumer's positions go into one transaction.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from helpers import create_topic, read_partitions

TXN_TIMEOUT_S = 60


def txn_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5})
    producer.init_transactions(TXN_TIMEOUT_S)
    return producer


def plain_produce(bootstrap: str, topic: str, partitions: int, count: int) -> list[tuple[int, str]]:
    """`count` records round-robin over the partitions; returns (partition, value) in produce order."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = []
    for i in range(count):
        partition, value = i % partitions, f"in-{i}"
        producer.produce(topic, value=value.encode(), partition=partition)
        sent.append((partition, value))
    assert producer.flush(60) == 0
    return sent


def values(stored: dict) -> dict[int, list[str]]:
    return {p: [m.value().decode() for m in msgs] for p, msgs in stored.items()}


def read(bootstrap: str, topic: str, partitions: int, isolation: str) -> dict[int, list[str]]:
    return values(read_partitions(bootstrap, topic, range(partitions), extra={"isolation.level": isolation}))


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as OffsetFetch answers them without require_stable: a pending
    transactional offset is not returned (read_committed consumers would instead wait for it to settle)."""
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted",
                        "enable.auto.commit": False})
    try:
        got = checker.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in got}
    finally:
        checker.close()


def test_read_committed_sees_committed_transactions_whole_and_no_aborted_record(broker, topic_name):
    # Proves: read_committed stops before an open transaction (it ends at the last stable offset) and sees a committed transaction on every partition once it commits; an aborted transaction's records reach read_uncommitted only.
    create_topic(broker.bootstrap, topic_name, 3)
    producer = txn_producer(broker.bootstrap, f"rc-{uuid.uuid4().hex[:8]}")

    def txn(tag: str, per_partition: int) -> dict[int, list[str]]:
        producer.begin_transaction()
        sent = {p: [] for p in range(3)}
        for p in range(3):
            for i in range(per_partition):
                value = f"{tag}-p{p}-{i}"
                producer.produce(topic_name, value=value.encode(), partition=p)
                sent[p].append(value)
        assert producer.flush(60) == 0
        return sent

    first = txn("commit1", 4)
    producer.commit_transaction(TXN_TIMEOUT_S)
    aborted = txn("abort", 3)
    producer.abort_transaction(TXN_TIMEOUT_S)
    open_txn = txn("commit2", 2)  # flushed: stored on every partition, not yet committed

    assert read(broker.bootstrap, topic_name, 3, "read_committed") == first
    assert read(broker.bootstrap, topic_name, 3, "read_uncommitted") == {
        p: first[p] + aborted[p] + open_txn[p] for p in range(3)
    }

    producer.commit_transaction(TXN_TIMEOUT_S)
    assert read(broker.bootstrap, topic_name, 3, "read_committed") == {p: first[p] + open_txn[p] for p in range(3)}


def test_consume_transform_produce_with_send_offsets_to_transaction(broker, topic_name):
    # Proves: send_offsets_to_transaction commits the consumer's positions with the outputs: invisible to the group until commit, never applied on abort (the batch is reprocessed), and at the end the group sits at the input's end while read_committed output holds every input transformed exactly once.
    inp, out, group = f"{topic_name}-in", f"{topic_name}-out", f"{topic_name}-group"
    create_topic(broker.bootstrap, inp, 2)
    create_topic(broker.bootstrap, out, 2)
    inputs = plain_produce(broker.bootstrap, inp, 2, 40)
    ends = {p: sum(1 for q, _ in inputs if q == p) for p in range(2)}

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
    })
    producer = txn_producer(broker.bootstrap, f"ctp-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([inp])
    processed: list[tuple[int, str]] = []
    aborted_outputs: list[str] = []
    transactions = {"committed": 0, "aborted": 0}
    last = committed(broker.bootstrap, group, inp, 2)  # nothing committed yet: OFFSET_INVALID each
    try:
        deadline = time.monotonic() + 180
        while len(processed) < len(inputs):
            assert time.monotonic() < deadline, f"processed {len(processed)} of {len(inputs)}"
            batch = [m for m in consumer.consume(num_messages=8, timeout=1.0) if m.error() is None]
            if not batch:
                continue
            producer.begin_transaction()
            outputs = []
            for m in batch:
                producer.produce(out, value=m.value().decode().upper().encode(), partition=m.partition())
                outputs.append((m.partition(), m.value().decode()))
            positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
            assert producer.flush(60) == 0
            assert committed(broker.bootstrap, group, inp, 2) == last, "offsets visible before the commit"
            if transactions["aborted"] == 0:
                # Abort the first batch: its outputs stay invisible, the group keeps its offsets, and
                # the consumer rewinds to the batch's first offsets to process it again.
                producer.abort_transaction(TXN_TIMEOUT_S)
                transactions["aborted"] += 1
                aborted_outputs += [v.upper() for _, v in outputs]
                time.sleep(1.0)  # markers follow EndTxn's answer: give a wrong offset time to appear
                assert committed(broker.bootstrap, group, inp, 2) == last, "an aborted transaction moved the group"
                for partition in sorted({m.partition() for m in batch}):
                    first = min(m.offset() for m in batch if m.partition() == partition)
                    consumer.seek(TopicPartition(inp, partition, first))
                continue
            producer.commit_transaction(TXN_TIMEOUT_S)
            transactions["committed"] += 1
            processed += outputs
            last = {**last, **{tp.partition: tp.offset for tp in positions}}
            deadline_visible = time.monotonic() + 30
            while (got := committed(broker.bootstrap, group, inp, 2)) != last:
                assert time.monotonic() < deadline_visible, f"committed offsets {got}, transaction sent {last}"
                time.sleep(0.2)
    finally:
        consumer.close()

    assert transactions["aborted"] == 1 and transactions["committed"] >= 1
    assert sorted(processed) == sorted(inputs), "each input processed by exactly one committed transaction"
    deadline = time.monotonic() + 30
    while (got := committed(broker.bootstrap, group, inp, 2)) != ends and time.monotonic() < deadline:
        time.sleep(0.5)
    assert got == ends, "the group's committed offsets after the last commit"

    want = {p: [v.upper() for q, v in inputs if q == p] for p in range(2)}
    assert read(broker.bootstrap, out, 2, "read_committed") == want
    uncommitted = read(broker.bootstrap, out, 2, "read_uncommitted")
    assert sorted(v for vs in uncommitted.values() for v in vs) == sorted(
        [v for vs in want.values() for v in vs] + aborted_outputs), "read_uncommitted: every output plus the aborted batch"


def test_init_transactions_fences_the_previous_producer(broker, topic_name):
    # Proves: a second producer's init_transactions with the same transactional.id aborts the first one's open transaction and fences it: the first's commit fails with a fatal fencing error, read_committed never sees its records.
    create_topic(broker.bootstrap, topic_name, 1)
    tid = f"fence-{uuid.uuid4().hex[:8]}"
    first = txn_producer(broker.bootstrap, tid)
    first.begin_transaction()
    first.produce(topic_name, value=b"zombie", partition=0)
    assert first.flush(60) == 0

    second = txn_producer(broker.bootstrap, tid)
    second.begin_transaction()
    second.produce(topic_name, value=b"live", partition=0)
    second.commit_transaction(TXN_TIMEOUT_S)

    try:
        first.commit_transaction(TXN_TIMEOUT_S)
        raise AssertionError("the fenced producer committed")
    except KafkaException as e:
        err = e.args[0]
        print(f"fenced producer: {err.name()} fatal={err.fatal()}: {err.str()}")
        assert err.fatal(), err
        # librdkafka's name for the broker's PRODUCER_FENCED / INVALID_PRODUCER_EPOCH on EndTxn (Kafka 4.4 gives it this).
        assert err.name() == "_FENCED", err

    assert read(broker.bootstrap, topic_name, 1, "read_committed") == {0: ["live"]}
    assert read(broker.bootstrap, topic_name, 1, "read_uncommitted") == {0: ["zombie", "live"]}
