"""Kafka's own kafka-dump-log (`DumpLogSegments --deep-iteration`) reads the segments a broker wrote
after recompressing batches for the topic's `compression.type`: every record decodes with Kafka's Java
codecs (gzip, xerial snappy, LZ4 frames, zstd), in the codec the topic asks for."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import run_java_tool, wait_for_topic

RECORDS = 300


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_dump_log_reads_every_recompressed_record(broker, topic_name, codec):
    # Proves: uncompressed produce into a compression.type=<codec> topic is stored in <codec> batches that
    # Kafka's DumpLogSegments decodes record by record, with every payload intact and valid CRCs.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1, config={"compression.type": codec})])[topic_name].result(30)
    wait_for_topic(admin, topic_name, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "none", "linger.ms": 20})
    values = [f"dump-{i:05d}-".encode() + b"abc" * 40 for i in range(RECORDS)]
    for v in values:
        producer.produce(topic_name, value=v, key=b"k", partition=0)
    assert producer.flush(30) == 0
    segment = broker.data_dir / f"{topic_name}-0" / "00000000000000000000.log"
    out = run_java_tool(
        "org.apache.kafka.tools.DumpLogSegments", "--deep-iteration", "--print-data-log", "--files", str(segment)
    )
    codecs = set(re.findall(r"compresscodec: (\w+)", out))
    assert codecs == {codec}, out[-2000:]
    assert "isvalid: false" not in out
    payloads = re.findall(r"payload: (dump-\d{5}-\S*)", out)
    assert payloads == [v.decode() for v in values], out[-2000:]
