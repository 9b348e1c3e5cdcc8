"""Format proof: a real Apache Kafka 4.4 broker opens a partition directory runnel wrote and serves it.

runnel writes several rolled segments (uncompressed, gzip and zstd batches, keys, headers, a
DeleteRecords-advanced log start), stops cleanly; Kafka creates the same topic, stops, gets runnel's
segment files in place of its own partition's, and restarts without its clean-shutdown marker, so it
runs its full log recovery over runnel's bytes (CRC, offsets, index rebuild). Kafka must then serve
exactly the records runnel served: same offsets, keys, values, headers and timestamps. This test
starts both brokers itself, whatever COMPAT_TARGET says.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker import REPO_DIR, Broker, target_from_env

TOPIC = "copied"
# Kafka 4.4's smallest segment.bytes; values of random hex keep batches large after compression.
CONFIGS = {"segment.bytes": "1048576", "retention.ms": "-1"}


def create(b: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1, config=CONFIGS)], operation_timeout=30)[TOPIC].result(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic=TOPIC, timeout=5).topics.get(TOPIC)
        if md is not None and md.error is None and md.partitions[0].leader >= 0:
            return
        time.sleep(0.2)
    raise AssertionError("topic never got a leader")


def read_all(b: Broker) -> tuple[int, int, list[tuple]]:
    """(log start, end offset, every record as (offset, key, value, headers, timestamp))."""
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "format-proof",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=30)
        consumer.assign([TopicPartition(TOPIC, 0, low)])
        records: list[tuple] = []
        deadline = time.monotonic() + 60
        while (not records or records[-1][0] < high - 1) and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None:
                continue
            assert m.error() is None, m.error()
            records.append((m.offset(), m.key(), m.value(), m.headers(), m.timestamp()))
        return low, high, records
    finally:
        consumer.close()


def set_checkpoint(path, offset: int) -> None:
    """Sets this partition's entry in one of Kafka's offset checkpoint files (version 0 text)."""
    entries = {}
    if path.exists():
        lines = path.read_text().split("\n")
        assert lines[0] == "0", lines[:2]
        for line in lines[2 : 2 + int(lines[1])]:
            topic, partition, value = line.split(" ")
            entries[(topic, partition)] = value
    entries[(TOPIC, "0")] = str(offset)
    body = "".join(f"{t} {p} {v}\n" for (t, p), v in entries.items())
    path.write_text(f"0\n{len(entries)}\n{body}")


@pytest.fixture
def runnel_binary():
    binary = os.environ.get("RUNNEL_BIN") or str(REPO_DIR / "target" / "release" / "runnel")
    if not os.access(binary, os.X_OK):
        if target_from_env() == "kafka":
            pytest.skip("the format proof needs a runnel binary (RUNNEL_BIN)")
        raise AssertionError(f"no runnel binary at {binary}")
    return binary


def test_kafka_recovers_and_serves_a_partition_runnel_wrote(runnel_binary):
    # Proves: runnel's segment files are Kafka's format: Kafka's own recovery accepts every byte and serves the same records.
    runnel = Broker(target="runnel")
    kafka = Broker(target="kafka")
    try:
        runnel.start()
        create(runnel)
        for codec in ("none", "gzip", "zstd", "none"):
            producer = Producer({"bootstrap.servers": runnel.bootstrap, "acks": "all",
                                 "compression.type": codec, "linger.ms": 5})
            for i in range(400):
                producer.produce(TOPIC, key=f"k{i % 37}".encode(), value=f"{codec}-{i}-{os.urandom(1500).hex()}".encode(),
                                 headers=[("codec", codec.encode()), ("i", str(i).encode())],
                                 timestamp=1_700_000_000_000 + i)
            assert producer.flush(60) == 0
        admin = AdminClient({"bootstrap.servers": runnel.bootstrap})
        start = TopicPartition(TOPIC, 0, 250)
        admin.delete_records([start])[start].result(timeout=30)
        expected = read_all(runnel)
        assert expected[0] == 250 and expected[1] == 1600 and len(expected[2]) == 1350, expected[:2]
        runnel.stop()
        runnel_dir = runnel.data_dir / f"{TOPIC}-0"
        segments = sorted(p for p in runnel_dir.iterdir() if p.suffix in (".log", ".index", ".timeindex"))
        assert len([p for p in segments if p.suffix == ".log"]) >= 3, "the test wants several rolled segments"

        kafka.start()
        create(kafka)
        kafka.stop()
        kafka_dirs = [p for p in kafka.data_dir.rglob(f"{TOPIC}-0") if p.is_dir()]
        assert len(kafka_dirs) == 1, kafka_dirs
        kafka_dir = kafka_dirs[0]
        # Kafka keeps its own partition.metadata (topic id); everything else comes from runnel.
        for p in kafka_dir.iterdir():
            if p.name != "partition.metadata":
                p.unlink()
        for p in segments:
            shutil.copy2(p, kafka_dir / p.name)
        # runnel's log start offset, in Kafka's checkpoint file of the log dir.
        log_dir = kafka_dir.parent
        set_checkpoint(log_dir / "log-start-offset-checkpoint", 250)
        # No clean-shutdown marker: Kafka recovers (re-reads and checks) every copied segment.
        for marker in log_dir.glob(".kafka_cleanshutdown"):
            marker.unlink()
        kafka.restart()
        got = read_all(kafka)
        assert got[:2] == expected[:2]
        assert got[2] == expected[2]
        # Kafka's LogLoader re-read every copied segment (CRC, offsets, indexes rebuilt) and found
        # nothing to cut.
        log = [line for line in kafka.log_path.read_text().splitlines() if f"{TOPIC}-0" in line]
        for base in sorted(int(p.stem) for p in segments if p.suffix == ".log"):
            assert any(f"Recovering unflushed segment {base}." in line for line in log), (base, log[-20:])
        assert not [line for line in log if "invalid" in line.lower() or "truncat" in line.lower()], log
    finally:
        runnel.cleanup()
        kafka.cleanup()
