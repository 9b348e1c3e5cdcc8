"""A Kafka Streams application (kafka-streams 4.4 from Maven Central) on the broker, through a restart.

apps/StreamsApp.java filters, maps (re-keying through repartition topics), aggregates a running
total per user and counts per user in 1-minute windows, at-least-once, with changelog topics for
its stores. The test feeds it two batches with a clean broker restart between them while the app
keeps running, and checks the output topics hold exactly the totals and window counts the input
implies: nothing lost across the restart, nothing counted twice (the first batch is fully
processed and committed before the restart).
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
import uuid

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


def test_streams_app_through_a_broker_restart(broker, tmp_path):
    # Proves: a Streams app's repartition and changelog topics, group and commits work, and a broker restart loses or repeats nothing.
    create_topic(broker.bootstrap, "payments", 3)
    create_topic(broker.bootstrap, "totals", 1)
    create_topic(broker.bootstrap, "counts", 1)
    app = subprocess.Popen(
        app_argv("StreamsApp", broker.bootstrap, f"payments-{uuid.uuid4().hex[:8]}", str(tmp_path / "state")),
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
        want_totals = expected_totals(first)
        got = latest_by_key(broker.bootstrap, "totals", want_totals, 120)
        assert got == want_totals, ("".join(output[-30:]), got)
        # Let the app commit what it processed (commit.interval.ms=100) before the broker goes.
        time.sleep(2)

        broker.stop()
        broker.restart()

        produce(broker.bootstrap, second)
        want_totals = expected_totals(first + second)
        got = latest_by_key(broker.bootstrap, "totals", want_totals, 180)
        assert got == want_totals, ("".join(output[-30:]), got)
        want_counts = {**expected_counts(first, window_a), **expected_counts(second, window_b)}
        got = latest_by_key(broker.bootstrap, "counts", want_counts, 60)
        assert got == want_counts, got
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
