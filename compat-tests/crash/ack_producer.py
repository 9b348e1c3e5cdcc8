"""Crash-test producer, librdkafka flavour: the same contract as AckProducer.java.

An idempotent confluent-kafka Producer (acks=all) sends numbered messages round-robin over the
partitions and prints "ACK msg-N PARTITION OFFSET" for every delivery report without error, flushing
each line. It runs until killed (or MAX_COUNT sends).

Usage: ack_producer.py BOOTSTRAP TOPIC PARTITION_COUNT [MAX_COUNT]
"""

from __future__ import annotations

import sys

from confluent_kafka import Producer


def main() -> None:
    bootstrap, topic, partition_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    max_count = int(sys.argv[4]) if len(sys.argv) > 4 else sys.maxsize
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )

    def on_delivery(err, msg):
        if err is None:
            sys.stdout.write(f"ACK {msg.value().decode()} {msg.partition()} {msg.offset()}\n")
            sys.stdout.flush()

    n = 0
    while n < max_count:
        msg = f"msg-{n}"
        try:
            producer.produce(topic, key=msg, value=msg, partition=n % partition_count, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain, then retry the same message
            continue
        n += 1
        producer.poll(0)
    producer.flush()


if __name__ == "__main__":
    main()
