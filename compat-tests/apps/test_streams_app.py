"""A Kafka Streams application (kafka-streams 4.4 from Maven Central) on the broker, through a restart.

apps/StreamsApp.java filters, maps (re-keying through repartition topics), aggregates a running
total per user and counts per user in 1-minute windows, with changelog topics for its stores. The
test feeds it two batches with a clean broker restart between them while the app keeps running, and
checks the output topics hold exactly the totals and window counts the input implies.

* at_least_once: the first batch is fully processed and committed before the restart, so nothing
  may be lost or counted twice; the latest value per key is checked.
* exactly_once_v2 (transactions: the app's producer commits outputs, changelogs and input offsets
  together): the broker restarts while the first batch may still be in flight, and the
  read_committed output must be exactly the sequence of running totals the input implies, each
  update once: no duplicate from reprocessing, nothing from an aborted transaction.
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from app_launch import app_argv
from helpers import create_topic

USERS = ["alice", "bob", "carol", "dave"]


def produce(bootstrap: str, records: list[tuple[str, str, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for key, value, timestamp_ms in records:
        producer.produce("payments", key=key.encode(), value=value.encode(), timestamp=timestamp_ms)
    assert producer.flush(60) == 0


def batch(window_start_ms: int, seed: int) -> list[tuple[str, str, int]]:
    """Payments inside one window: valid amounts plus values the filter must drop."""
    records = []
    for i in range(120):
        user = USERS[(i * 7 + seed) % len(USERS)]
        ts = window_start_ms + 1000 + (i * 397) % 50_000
        value = "n/a" if i % 11 == 0 else str((i * 31 + seed) % 500 - 50)
        records.append((user, value, ts))
    return records


def expected_totals(records) -> dict[str, int]:
    totals: dict[str, int] = {}
    for user, value, _ in records:
        if value.lstrip("-").isdigit():
            totals[user.upper()] = totals.get(user.upper(), 0) + int(value)
    return totals


def expected_counts(records, window_start_ms: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for user, value, _ in records:
        if value.lstrip("-").isdigit():
            key = f"{user.upper()}@{window_start_ms}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def latest_by_key(bootstrap: str, topic: str, want: dict[str, int], timeout_s: float) -> dict[str, int]:
    """Reads `topic` from the start, keeping each key's latest value, until it equals `want`."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if latest == want:
                    return latest
                continue
            latest[message.key().decode()] = struct.unpack(">q", message.value())[0]
            if latest == want:
                return latest
    finally:
        consumer.close()
    return latest


def expected_updates(records) -> dict[str, list[int]]:
    """Every running total the aggregate emits per user, in input order (caching is off: one per record)."""
    updates: dict[str, list[int]] = {}
    for user, value, _ in records:
        if value.lstrip("-").isdigit():
            seq = updates.setdefault(user.upper(), [])
            seq.append((seq[-1] if seq else 0) + int(value))
    return updates


def updates_by_key(bootstrap: str, topic: str, want: dict[str, list[int]], timeout_s: float) -> dict[str, list[int]]:
    """Reads `topic` read_committed from the start, every value per key in order, until it holds at
    least as many values as `want` (then 3 s more, so a duplicate would show up)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}", "isolation.level": "read_committed",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got: dict[str, list[int]] = {}
    wanted = sum(len(v) for v in want.values())
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                got.setdefault(message.key().decode(), []).append(struct.unpack(">q", message.value())[0])
            if settle_until is None and sum(len(v) for v in got.values()) >= wanted:
                settle_until = time.monotonic() + 3.0
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_streams_app_through_a_broker_restart(broker, tmp_path, guarantee):
    # Proves: a Streams app's repartition and changelog topics, group and commits work, and a broker restart loses or repeats nothing; under exactly_once_v2 the read_committed output has each running total exactly once even when the restart hits mid-processing.
    create_topic(broker.bootstrap, "payments", 3)
    create_topic(broker.bootstrap, "totals", 1)
    create_topic(broker.bootstrap, "counts", 1)
    exactly_once = guarantee == "exactly_once_v2"
    app = subprocess.Popen(
        app_argv("StreamsApp", broker.bootstrap, f"payments-{uuid.uuid4().hex[:8]}", str(tmp_path / "state"),
                 guarantee),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(app.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.strip() == "RUNNING" for line in output):
            assert app.poll() is None, "".join(output[-50:])
            assert time.monotonic() < deadline, "the app did not reach RUNNING:\n" + "".join(output[-50:])
            time.sleep(0.2)

        window_a = (int(time.time() * 1000) // 60_000 - 3) * 60_000
        window_b = window_a + 60_000
        first, second = batch(window_a, 1), batch(window_b, 2)
        produce(broker.bootstrap, first)
        if not exactly_once:
            want_totals = expected_totals(first)
            got = latest_by_key(broker.bootstrap, "totals", want_totals, 120)
            assert got == want_totals, ("".join(output[-30:]), got)
            # Let the app commit what it processed (commit.interval.ms=100) before the broker goes.
            time.sleep(2)
        else:
            # Restart while the app is inside its first transactions.
            time.sleep(1)

        broker.stop()
        broker.restart()

        produce(broker.bootstrap, second)
        want_totals = expected_totals(first + second)
        got = latest_by_key(broker.bootstrap, "totals", want_totals, 180)
        assert got == want_totals, ("".join(output[-30:]), got)
        want_counts = {**expected_counts(first, window_a), **expected_counts(second, window_b)}
        got = latest_by_key(broker.bootstrap, "counts", want_counts, 60)
        assert got == want_counts, got
        if exactly_once:
            want_updates = expected_updates(first + second)
            got = updates_by_key(broker.bootstrap, "totals", want_updates, 60)
            assert got == want_updates, "read_committed totals: every running total once, in order"
        assert app.poll() is None, "".join(output[-50:])
    finally:
        if app.poll() is None:
            app.stdin.close()
            try:
                app.wait(timeout=60)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
    assert app.returncode == 0, "".join(output[-50:])
