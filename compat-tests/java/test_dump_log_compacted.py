"""Kafka's DumpLogSegments reads the segments the log cleaner wrote: every batch valid, offsets kept with gaps, only
each key's latest record left in the cleaned segments, tombstones carrying their delete horizon."""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import run_java_tool, wait_for, wait_for_topic

DUMP = "org.apache.kafka.tools.DumpLogSegments"

pytestmark = pytest.mark.broker_config({"log.cleaner.backoff.ms": 100})

TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.01",
    # Long enough that the tombstones are still there to be seen with their horizon.
    "delete.retention.ms": "600000",
}


def dump(path) -> str:
    return run_java_tool(DUMP, "--deep-iteration", "--print-data-log", "--files", str(path))


def test_kafka_dump_log_reads_cleaned_segments(broker, topic_name):
    # Proves: after cleaning (codecs none, gzip, snappy, lz4, zstd), DumpLogSegments finds every batch of every
    # sealed segment valid, sees one record per key in the first segment, and a tombstone with its delete horizon.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1, config=TOPIC_CONFIGS)])[topic_name].result(timeout=60)
    wait_for_topic(admin, topic_name, 1)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 20})
        for rnd in range(3):
            for k in range(4):
                # Each codec's round 2 deletes key 0 of that codec; the others keep their round-2 values.
                value = None if (k == 0 and rnd == 2) else f"{codec}-{k}-{rnd}-{'x' * 64}".encode()
                producer.produce(topic_name, value=value, key=f"{codec}-k{k}".encode(), partition=0)
            producer.flush(30)
            time.sleep(0.25)
    filler = Producer({"bootstrap.servers": broker.bootstrap})
    partition_dir = broker.data_dir / f"{topic_name}-0"

    def cleaned():
        filler.produce(topic_name, value=b"f", key=b"filler", partition=0)
        filler.flush(30)
        time.sleep(0.25)
        logs = sorted(partition_dir.glob("*.log"))
        if len(logs) < 2:
            return None
        try:
            text = dump(logs[0])
        except AssertionError:
            return None  # the cleaner swapped the segment while the tool read it
        keys = re.findall(r"\| offset: \d+ .*? key: (\S+)", text)
        wanted = [k for k in keys if k != "filler"]
        return text if wanted and len(wanted) == len(set(wanted)) and len(wanted) == 20 else None

    first = wait_for(cleaned, timeout_s=90, what="the first segment cleaned to one record per key")
    for path in sorted(partition_dir.glob("*.log"))[:-1]:
        text = dump(path)
        assert "isvalid: false" not in text, text
        assert "Exception" not in text, text
    batches = re.findall(r"baseOffset: (\d+) lastOffset: (\d+) count: (\d+) .*?deleteHorizonMs: (\S+)", first)
    assert batches, first
    offsets = [int(o) for o in re.findall(r"\| offset: (\d+) ", first)]
    assert offsets == sorted(offsets) and len(offsets) == len(set(offsets)), offsets
    # The offsets of the cleaned-away records are gaps: the survivors keep theirs.
    assert offsets[-1] - offsets[0] + 1 > len(offsets), offsets
    tombstones = re.findall(r"\| offset: \d+ .*? valueSize: -1 .*? key: (\S+)", first)
    assert sorted(tombstones) == sorted(f"{c}-k0" for c in ("none", "gzip", "snappy", "lz4", "zstd")), first
    assert any(h.startswith("OptionalLong[") for *_, h in batches), first
    latest = dict(re.findall(r"key: (\S+) payload: (\S+)", first))
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        for k in (1, 2, 3):
            assert latest[f"{codec}-k{k}"].startswith(f"{codec}-{k}-2-"), latest
