"""Helpers the Python compat tests share (importable as `helpers`: conftest puts harness/ on sys.path)."""

from __future__ import annotations

import time

from broker import KAFKA_CONF_DIR, java_classpath


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy and return its value.

    Topic creation and deletion become visible through Metadata a moment after the admin call returns
    on Apache Kafka (the controller commits, then the broker applies the record); clients cope by
    retrying, and so do we.
    """
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def java_tool_argv(main_class: str, *args: str) -> list[str]:
    """`java -cp <kafka libs>/* MAIN args`, the way kafka-run-class.sh runs the CLI tools."""
    return [
        "java",
        "-Xmx256M",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-tools.properties'}",
        "-Dlog4j2.statusLoggerLevel=OFF",
        "-cp",
        java_classpath(),
        main_class,
        *args,
    ]


def create_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Create `topic` with confluent-kafka's AdminClient and wait until Metadata shows every partition led."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=timeout_s)
    wait_for_topic(admin, topic, partitions, timeout_s)


def wait_for_topic(admin, topic: str, partitions: int, timeout_s: float = 30.0):
    def ready():
        md = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if md is None or md.error is not None or len(md.partitions) != partitions:
            return None
        return md if all(p.leader >= 0 for p in md.partitions.values()) else None

    return wait_for(ready, timeout_s, what=f"topic {topic} with {partitions} led partitions in Metadata")


def read_partitions(bootstrap: str, topic: str, partitions, timeout_s: float = 120.0, extra: dict | None = None):
    """Read each partition from its beginning to the end, without joining a group.

    Returns {partition: [Message, ...]} in the order the broker served them. The end is where the
    consumer reports partition EOF, i.e. the high watermark, which covers every acknowledged record.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    conf = {
        "bootstrap.servers": bootstrap,
        # librdkafka insists on a group.id for a Consumer even when it only assign()s; nothing is committed.
        "group.id": "unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 8 * 1024 * 1024,
    }
    conf.update(extra or {})
    consumer = Consumer(conf)
    partitions = list(partitions)
    out = {p: [] for p in partitions}
    pending = set(partitions)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                counts = {p: len(v) for p, v in out.items()}
                raise AssertionError(f"partitions {sorted(pending)} never reached EOF; read so far {counts}")
            for msg in consumer.consume(num_messages=10000, timeout=1.0):
                err = msg.error()
                if err is None:
                    out[msg.partition()].append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                else:
                    raise AssertionError(f"consume error on partition {msg.partition()}: {err}")
    finally:
        consumer.close()
    return out


def run_java_tool(main_class: str, *args: str, stdin: str | None = None, timeout_s: float = 120.0) -> str:
    """Run one Kafka CLI tool to completion; fail the test (with its stderr) on a non-zero exit."""
    import subprocess

    argv = java_tool_argv(main_class, *args)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, (
        f"{main_class} {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done.stdout
