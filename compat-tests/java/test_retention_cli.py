"""Kafka's own tools on retention: kafka-delete-records against the broker, and kafka-dump-log
(DumpLogSegments) reading the segment files the broker wrote after time rolls and retention."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import java_tool_argv, run_java_tool, wait_for, wait_for_topic

DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand"
DUMP_LOG = "org.apache.kafka.tools.DumpLogSegments"
TIMEOUT_S = 30
FAST_RETENTION = {"log.retention.check.interval.ms": 500, "log.initial.task.delay.ms": 0}
# What DumpLogSegments reports (on stderr, or for a torn tail on stdout) when a segment or index is wrong.
DUMP_LOG_ERRORS = re.compile(
    r"Mismatches in|Non-consecutive offsets|timestamp mismatch|out of order timestamp|indexed offsets are not found"
    r"|invalid bytes at the end|Exception|Error",
)


def without_first_offset_notes(stderr: str) -> str:
    """DumpLogSegments checks offsets for consecutiveness starting from -1 in every file, so a segment whose base
    offset is not 0 always gets "Non-consecutive offsets in <file>\n  -1 is followed by <base>" (Kafka's own
    segments too). Drops exactly those notes; any other pair stays and fails the test."""
    kept = []
    lines = stderr.splitlines()
    i = 0
    while i < len(lines):
        header = re.match(r"Non-consecutive offsets in .*/(\d{20})\.log$", lines[i])
        if header and i + 1 < len(lines) and lines[i + 1].strip() == f"-1 is followed by {int(header.group(1))}" \
                and (i + 2 >= len(lines) or not lines[i + 2].startswith("  ")):
            i += 2
            continue
        kept.append(lines[i])
        i += 1
    return "\n".join(kept)


def make_topic(broker, topic: str, configs: dict) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(timeout=TIMEOUT_S)
    wait_for_topic(admin, topic, 1)


def earliest(broker, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[0]
    finally:
        consumer.close()


def test_kafka_delete_records_cli(broker, topic_name, tmp_path):
    # Proves: kafka-delete-records deletes records below the offsets of its JSON file, prints each partition's new
    # low watermark, and reports Kafka's error for an offset past the high watermark.
    make_topic(broker, topic_name, {})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(20):
        producer.produce(topic_name, value=f"v{i}".encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0

    spec = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic_name, "partition": 0, "offset": 7}]}))
    out = run_java_tool(DELETE_RECORDS, "--bootstrap-server", broker.bootstrap, "--offset-json-file", str(spec))
    assert f"partition: {topic_name}-0\tlow_watermark: 7" in out, out
    assert earliest(broker, topic_name) == 7

    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic_name, "partition": 0, "offset": 25}]}))
    out = run_java_tool(DELETE_RECORDS, "--bootstrap-server", broker.bootstrap, "--offset-json-file", str(spec))
    assert re.search(rf"partition: {re.escape(topic_name)}-0\terror: .*OffsetOutOfRangeException", out), out
    assert earliest(broker, topic_name) == 7


@pytest.mark.broker_config(FAST_RETENTION)
def test_kafka_dump_log_reads_segments_after_rolls_and_retention(broker, topic_name):
    # Proves: segment files written through time rolls, time retention and DeleteRecords pass Kafka's
    # DumpLogSegments with deep iteration: every kept record is listed with its payload, offsets are
    # consecutive, and the offset and time indexes match their logs.
    # Runnel target only in substance: on Kafka it reads Kafka's own files (so it checks the test itself).
    make_topic(broker, topic_name, {"segment.ms": "100", "retention.ms": "300000"})
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    timestamps = [now - 600_000, now - 599_000] + [now + i * 200 for i in range(6)]
    for i, ts in enumerate(timestamps):
        # Several records per batch, so index entries point inside multi-record batches.
        for j in range(3):
            producer.produce(topic_name, key=f"k{j}".encode(), value=f"payload-{i}-{j}".encode(), partition=0,
                             timestamp=ts + j)
        assert producer.flush(TIMEOUT_S) == 0
    # The two old batches expire; the log starts at the third batch.
    wait_for(lambda: earliest(broker, topic_name) == 6, timeout_s=TIMEOUT_S, what="earliest 6 after retention")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic_name, 0, 9)
    assert admin.delete_records([tp])[tp].result(timeout=TIMEOUT_S).low_watermark == 9
    # Retention deletes the segment DeleteRecords left below the start.
    partition_dir = broker.data_dir / f"{topic_name}-0"
    wait_for(lambda: sorted(int(p.stem) for p in partition_dir.glob("*.log"))[0] == 9, timeout_s=TIMEOUT_S,
             what="the segment below the log start deleted")

    # Every .log, and the indexes of the sealed segments. Kafka preallocates an active segment's indexes and
    # DumpLogSegments reads their zero entries as mismatches; runnel writes only real entries, so on runnel the
    # active segment's indexes are checked too.
    bases = sorted(int(p.stem) for p in partition_dir.glob("*.log"))
    files = [str(partition_dir / f"{base:020}.log") for base in bases]
    indexed = bases if broker.target == "runnel" else bases[:-1]
    files += [str(partition_dir / f"{base:020}.{ext}") for base in indexed for ext in ("index", "timeindex")]
    assert len(bases) == 5, bases
    argv = java_tool_argv(DUMP_LOG, "--deep-iteration", "--print-data-log", "--files", ",".join(files))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert not DUMP_LOG_ERRORS.search(without_first_offset_notes(done.stderr)), done.stderr
    assert not DUMP_LOG_ERRORS.search(out), out
    listed = [int(o) for o in re.findall(r"\| offset: (\d+) .*payload: payload-", out)]
    assert listed == list(range(9, 24)), out
    assert "payload-7-2" in out
