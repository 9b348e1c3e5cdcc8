#!/usr/bin/env python3
"""Keyed load for the compaction workload (h), run with compat-tests/.cache/venv/bin/python (it
needs confluent-kafka, the same client for both brokers).

    compaction_load.py create --bootstrap B --topic T
    compaction_load.py produce --bootstrap B --topic T --records N --keys K --value-bytes V
    compaction_load.py release --bootstrap B --topic T

`create` makes a compacted topic whose records stay uncleanable (min.compaction.lag.ms = 1 h)
while `produce` writes the same keyed records to either broker (key i % K, seeded values);
`release` sets min.compaction.lag.ms = 0, which lets the cleaner clean everything but the active
segment: the workload times the cleaning from there.
"""

import argparse
import json
import random
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(16 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "3600000",
}


def create(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(args.topic, 1, 1, config=TOPIC_CONFIGS)])
    futures[args.topic].result(timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline:
        md = admin.list_topics(args.topic, timeout=10)
        t = md.topics.get(args.topic)
        if t is not None and t.error is None and t.partitions and t.partitions[0].leader >= 0:
            return {"created": args.topic}
        time.sleep(0.2)
    raise SystemExit("topic never got a leader")


def produce(args):
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "batch.size": 1 << 20,
                         "compression.type": "none", "acks": "1", "queue.buffering.max.messages": 1_000_000})
    rng = random.Random(7)
    alphabet = bytes(range(97, 123))
    values = [bytes(rng.choice(alphabet) for _ in range(args.value_bytes)) for _ in range(64)]
    start = time.monotonic()
    payload = 0
    for i in range(args.records):
        key = b"key-%08d" % (i % args.keys)
        value = values[i % 64]
        while True:
            try:
                producer.produce(args.topic, value, key, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
        payload += len(key) + len(value)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise SystemExit("records left unflushed")
    elapsed = time.monotonic() - start
    return {"records": args.records, "keys": args.keys, "payload_bytes": payload, "elapsed_s": elapsed}


def release(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=60)
    return {"released_unix_s": time.time()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["create", "produce", "release"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, default=0)
    p.add_argument("--keys", type=int, default=1)
    p.add_argument("--value-bytes", type=int, default=100)
    args = p.parse_args()
    out = {"create": create, "produce": produce, "release": release}[args.command](args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
