"""Transactional workload for the random-SIGKILL test, librdkafka flavour, one transaction per stdin line.

Runs in its own process so the test can kill it when the client blocks past any timeout (librdkafka's
send_offsets_to_transaction was seen blocking minutes after a Kafka kill -9) and start another with the
same transactional.id, which fences this one.

stdin:  TXN <n> <commit|abort> <json {partition: [values]}>
stdout: READY                      after init_transactions
        COMMITTING <n>             just before commit_transaction: from here the outcome may be a commit
        DONE <n> <committed|aborted|unknown> <confirmed 0|1> <note>
        OFFSET <n> <offset|skipped>  after a confirmed outcome: the group's committed offset for
                                   INPUT_TOPIC partition 0 (require_stable, as read_committed consumers ask)
Each transaction also sends the offset INPUT_TOPIC[0] -> n for GROUP.

Usage: txn_workload.py BOOTSTRAP TRANSACTIONAL_ID TOPIC INPUT_TOPIC GROUP
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    bootstrap, tid, topic, inp, group = sys.argv[1:6]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 2,
                         "transaction.timeout.ms": 20000, "message.timeout.ms": 20000})
    producer.init_transactions(60)
    metadata = Consumer({"bootstrap.servers": bootstrap, "group.id": group}).consumer_group_metadata()
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                        "isolation.level": "read_committed"})
    say("READY")
    for line in sys.stdin:
        _, n, action, sent = line.split(" ", 3)
        n, sent = int(n), {int(p): vs for p, vs in json.loads(sent).items()}
        outcome, confirmed, note, commit_called, usable = "aborted", False, "", False, True
        try:
            producer.begin_transaction()
            for p, vs in sent.items():
                for v in vs:
                    producer.produce(topic, value=v.encode(), partition=p)
            producer.send_offsets_to_transaction([TopicPartition(inp, 0, n)], metadata, 30)
            if producer.flush(30) != 0:
                raise KafkaException("records left unacked")
            if action == "commit":
                say(f"COMMITTING {n}")
                commit_called = True
                for attempt in range(3):
                    try:
                        producer.commit_transaction(30)
                        break
                    except KafkaException as e:
                        note += f" commit attempt {attempt}: {e.args[0]};"
                        if attempt == 2 or not e.args[0].retriable():
                            raise
                outcome, confirmed = "committed", True
            else:
                producer.abort_transaction(30)
                confirmed = True
        except KafkaException as e:
            err = e.args[0] if e.args and hasattr(e.args[0], "fatal") else None
            note += f" {e.args[0] if e.args else e};"
            outcome = "unknown" if commit_called else "aborted"
            if err is not None and not err.fatal() and err.txn_requires_abort():
                try:
                    producer.abort_transaction(30)
                    outcome, confirmed = "aborted", True
                except KafkaException as abort_error:
                    note += f" abort: {abort_error.args[0]};"
                    usable = False
            else:
                usable = False
        say(f"DONE {n} {outcome} {int(confirmed)} {note.strip() or '-'}")
        if confirmed:
            try:
                [tp] = checker.committed([TopicPartition(inp, 0)], timeout=20)
                say(f"OFFSET {n} {tp.offset}")
            except KafkaException:
                say(f"OFFSET {n} skipped")
        if not usable:
            return 3  # fenced or fatal: the test starts a new process (same id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
