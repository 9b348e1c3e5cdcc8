"""SIGKILL the broker under an idempotent acks=all producer; after restart every ack must hold."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from helpers import create_topic, read_partitions

from broker import CACHE_DIR, KAFKA_CONF_DIR, java_classpath

CRASH_DIR = Path(__file__).resolve().parent
PARTITION_COUNT = 3
# Crash once this many sends were acked, or once the producer has run this long with at least one ack:
# a slow broker still gets crashed mid-stream instead of timing the test out.
ACKS_BEFORE_KILL = 20_000
RUN_S_MAX = 15.0
FIRST_ACK_TIMEOUT_S = 90.0


def java_producer_argv(bootstrap: str, topic: str) -> list[str]:
    return [
        "java", "-Xmx256M",
        f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-tools.properties'}",
        "-Dlog4j2.statusLoggerLevel=OFF",
        "-cp", f"{CACHE_DIR / 'java-classes'}:{java_classpath()}",
        "AckProducer", bootstrap, topic, str(PARTITION_COUNT),
    ]


def python_producer_argv(bootstrap: str, topic: str) -> list[str]:
    return [sys.executable, str(CRASH_DIR / "ack_producer.py"), bootstrap, topic, str(PARTITION_COUNT)]


class AckReader:
    """Collects "ACK msg partition offset" lines from a producer process on a background thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.acks: list[tuple[str, int, int]] = []
        self.other_lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ACK":
                self.acks.append((parts[1], int(parts[2]), int(parts[3])))
            else:
                self.other_lines.append(line.rstrip())

    def count(self) -> int:
        return len(self.acks)


@pytest.mark.parametrize("producer_kind", ["java", "librdkafka"])
def test_acked_records_survive_sigkill(broker, topic_name, producer_kind, tmp_path):
    # Proves: after a SIGKILL and a restart on the same data dir, every acked record is present once at its acked offset, and no record twice.
    create_topic(broker.bootstrap, topic_name, PARTITION_COUNT)
    argv = (java_producer_argv if producer_kind == "java" else python_producer_argv)(broker.bootstrap, topic_name)
    stderr_path = tmp_path / "producer.stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
    reader = AckReader(proc)
    try:
        started = time.monotonic()
        first_ack_at = None
        while True:
            now = time.monotonic()
            if reader.count() and first_ack_at is None:
                first_ack_at = now
            if reader.count() >= ACKS_BEFORE_KILL or (first_ack_at and now - first_ack_at >= RUN_S_MAX):
                break
            if first_ack_at is None and now - started > FIRST_ACK_TIMEOUT_S:
                pytest.fail(f"no ack within {FIRST_ACK_TIMEOUT_S}s; producer stderr:\n{stderr_path.read_text()}")
            if proc.poll() is not None:
                pytest.fail(f"producer exited {proc.returncode} early; stderr:\n{stderr_path.read_text()}")
            time.sleep(0.01)
        broker.kill9()
    finally:
        # Stop the producer: whatever it had in flight is now unacknowledged and may or may not be stored.
        proc.kill()
        proc.wait(timeout=30)
        reader.thread.join(timeout=30)

    acks = reader.acks
    print(f"{producer_kind}: {len(acks)} acks before SIGKILL")
    assert acks, f"no acks; producer stderr:\n{stderr_path.read_text()}"

    broker.restart()
    stored = read_partitions(broker.bootstrap, topic_name, range(PARTITION_COUNT))

    # No message stored twice anywhere, acked or not.
    seen: dict[str, tuple[int, int]] = {}
    for partition, messages in stored.items():
        for m in messages:
            value = m.value().decode()
            assert m.key().decode() == value
            assert value not in seen, f"{value} stored twice: {seen[value]} and {(partition, m.offset())}"
            seen[value] = (partition, m.offset())

    # Every acked message is stored, exactly where the ack said.
    acked_values = set()
    for value, partition, offset in acks:
        assert value not in acked_values, f"{value} acked twice"
        acked_values.add(value)
        assert seen.get(value) == (partition, offset), f"{value} acked at {(partition, offset)}, stored at {seen.get(value)}"

    # The restarted broker appends after the recovered log, not over it.
    appended = {}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for partition in range(PARTITION_COUNT):
        producer.produce(
            topic_name, value=b"after-restart", partition=partition,
            on_delivery=lambda err, msg: appended.__setitem__(msg.partition(), (err, msg.offset())),
        )
    assert producer.flush(60) == 0
    for partition, messages in stored.items():
        err, offset = appended[partition]
        assert err is None, err
        last = messages[-1].offset() if messages else -1
        assert offset > last, f"partition {partition}: post-restart record at {offset}, log already reaches {last}"
