"""Crash-test transaction, librdkafka flavour: one transaction over several partitions, then its commit.

Writes RECORDS_PER_PARTITION records "VALUE_PREFIX-pP-I" to each partition of TOPIC in one transaction;
with GROUP and INPUT_TOPIC also sends the offsets INPUT_TOPIC partition p -> OFFSET for every
partition p of INPUT_TOPIC (a consume-transform-produce step). Prints "FLUSHED" once every record is
acked (stored, not yet committed), then calls commit_transaction and prints "COMMITTED" or
"ERR <name> <message>". The test kills it whenever it likes.

Usage: txn_commit.py BOOTSTRAP TRANSACTIONAL_ID TOPIC PARTITIONS RECORDS_PER_PARTITION VALUE_PREFIX
                     [GROUP INPUT_TOPIC INPUT_PARTITIONS OFFSET]
"""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def main() -> int:
    bootstrap, tid, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    partitions, per_partition, prefix = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5,
                         "transaction.timeout.ms": 60000})
    producer.init_transactions(60)
    producer.begin_transaction()
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=f"{prefix}-p{p}-{i}".encode(), partition=p)
    if len(sys.argv) > 7:
        group, input_topic, input_partitions, offset = sys.argv[7], sys.argv[8], int(sys.argv[9]), int(sys.argv[10])
        metadata = Consumer({"bootstrap.servers": bootstrap, "group.id": group}).consumer_group_metadata()
        producer.send_offsets_to_transaction(
            [TopicPartition(input_topic, p, offset) for p in range(input_partitions)], metadata, 60)
    if producer.flush(60) != 0:
        print("ERR flush records left unacked", flush=True)
        return 1
    print("FLUSHED", flush=True)
    try:
        producer.commit_transaction(120)
    except KafkaException as e:
        err = e.args[0]
        print(f"ERR {err.name()} {err.str()}", flush=True)
        return 1
    print("COMMITTED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
