"""Kafka Connect standalone (4.3.1, the newest release whose FileStream connectors Maven Central
serves) with the FileStream source and sink connectors.

A file's lines go through the source connector into a topic and back out through the sink
connector into another file, in order; lines appended while Connect runs follow; the sink's
consumer group commits the offsets of everything it wrote.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid

from app_launch import CONNECT_CLASSPATH, app_argv
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from helpers import create_topic, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_in(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_connect_standalone_file_source_to_file_sink(broker, tmp_path):
    # Proves: Connect's producer, consumer group, offset commits and admin calls work; lines arrive whole and in order.
    topic = f"connect-lines-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1)
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    first = [f"line {i}: {uuid.uuid4()}" for i in range(500)]
    source_file.write_text("\n".join(first) + "\n")

    worker = tmp_path / "worker.properties"
    worker.write_text(
        f"bootstrap.servers={broker.bootstrap}\n"
        "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
        "value.converter=org.apache.kafka.connect.storage.StringConverter\n"
        f"offset.storage.file.filename={tmp_path / 'connect.offsets'}\n"
        "offset.flush.interval.ms=500\n"
        f"listeners=http://127.0.0.1:{free_port()}\n"
    )
    source = tmp_path / "source.properties"
    source.write_text(
        "name=file-source\nconnector.class=FileStreamSource\ntasks.max=1\n"
        f"file={source_file}\ntopic={topic}\n"
    )
    sink = tmp_path / "sink.properties"
    sink.write_text(
        "name=file-sink\nconnector.class=FileStreamSink\ntasks.max=1\n"
        f"file={sink_file}\ntopics={topic}\n"
        # Commit what the sink wrote promptly, so the check below does not wait a minute.
        "consumer.override.auto.commit.interval.ms=500\n"
    )
    log = tmp_path / "connect.log"
    with log.open("w") as out:
        connect = subprocess.Popen(
            app_argv("org.apache.kafka.connect.cli.ConnectStandalone", str(worker), str(source), str(sink),
                     heap="768M", classpath=CONNECT_CLASSPATH),
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: lines_in(sink_file) == first or connect.poll() is not None,
                 timeout_s=180, what="the first lines in the sink file")
        assert connect.poll() is None, log.read_text()[-5000:]
        assert lines_in(sink_file) == first

        more = [f"appended {i}: {uuid.uuid4()}" for i in range(200)]
        with source_file.open("a") as f:
            f.write("\n".join(more) + "\n")
        wait_for(lambda: lines_in(sink_file) == first + more, timeout_s=120,
                 what="the appended lines in the sink file")

        # The topic holds exactly the lines, in order.
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while len(seen) < len(first + more) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.append(message.value().decode())
        consumer.close()
        assert seen == first + more

        # The sink's group committed the end of what it wrote.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})

        def committed():
            result = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions("connect-file-sink")]
            )["connect-file-sink"].result(timeout=10)
            offsets = {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}
            return offsets if offsets.get(0) == len(first + more) else None

        wait_for(committed, timeout_s=60, what="the sink group's committed offset")
    finally:
        if connect.poll() is None:
            connect.send_signal(signal.SIGTERM)
            try:
                connect.wait(timeout=60)
            except subprocess.TimeoutExpired:
                connect.kill()
                connect.wait()
    assert connect.returncode in (0, 143, -signal.SIGTERM), log.read_text()[-5000:]
