#!/usr/bin/env python3
"""Offset-commit load and restart probe for the restart workload (r), run with
compat-tests/.cache/venv/bin/python (confluent-kafka, the same client for both brokers).

    offsets_load.py commit --bootstrap B --topic T --groups G --partitions P --commits N --segment-bytes S
    offsets_load.py verify --bootstrap B --topic T --groups G --partitions P --commits N --timeout-s S

`commit` creates topic T (P partitions, never produced to), makes `__consumer_offsets` exist, sets its
`segment.bytes` to S (the same topic-config change on both brokers, rather than each broker's
`offsets.topic.segment.bytes`), then commits N offsets in total: rounds of one OffsetCommit per group
(AdminClient.alter_consumer_group_offsets, generation -1, no members) each carrying all P partitions,
every group's round in flight at once. Before the last round `segment.ms` is set to 1 s (and 1.5 s
pass), so that round rolls every active segment and the earlier rounds become cleanable. The offset committed for (group g, partition p) in round k is
expected(g, p, k); the last round's values are what `verify` must read back.

`verify` prints {"ready": true} once imported and set up, then waits for a line on stdin (the caller
starts the broker after it), then polls OffsetFetch (all P partitions listed) for every group until
each answers with exactly its last committed offsets; it prints the wall-clock time (unix ns) at which the last group answered,
how many polls failed (coordinator loading, broker not up) and how many answered wrong offsets.
"""

import argparse
import json
import sys
import time

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

OFFSETS_TOPIC = "__consumer_offsets"


def group_name(g: int) -> str:
    return f"r-group-{g:03d}"


def expected(g: int, p: int, k: int) -> int:
    return k * 1_000_000 + g * 1000 + p


def rounds(args) -> int:
    per_round = args.groups * args.partitions
    if args.commits % per_round:
        raise SystemExit(f"--commits must be a multiple of groups x partitions ({per_round})")
    return args.commits // per_round


def admin_client(bootstrap: str) -> AdminClient:
    # Short reconnect backoff: `verify` starts before the broker listens.
    return AdminClient({"bootstrap.servers": bootstrap, "reconnect.backoff.ms": 10,
                        "reconnect.backoff.max.ms": 50, "retry.backoff.ms": 10, "retry.backoff.max.ms": 50})


def wait_topic(admin: AdminClient, topic: str, partitions: int | None = None, timeout_s: float = 120) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if (t is not None and t.error is None and t.partitions
                and all(pm.leader >= 0 for pm in t.partitions.values())
                and (partitions is None or len(t.partitions) == partitions)):
            return len(t.partitions)
        time.sleep(0.2)
    raise SystemExit(f"topic {topic} never got leaders")


def set_offsets_topic_config(admin: AdminClient, name: str, value: str) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=60)


def commit(args):
    admin = admin_client(args.bootstrap)
    admin.create_topics([NewTopic(args.topic, args.partitions, 1)])[args.topic].result(timeout=60)
    wait_topic(admin, args.topic, args.partitions)
    # FindCoordinator (inside the first OffsetFetch) creates __consumer_offsets on both brokers; against
    # Kafka the first lookup can stall while the topic is created, so retry with a short timeout.
    # (Partitions are always listed explicitly: this librdkafka crashes on an all-partitions OffsetFetch
    # while the coordinator is unavailable.)
    probe = ConsumerGroupTopicPartitions(group_name(0), [TopicPartition(args.topic, 0)])
    deadline = time.time() + 120
    while True:
        try:
            admin.list_consumer_group_offsets([probe], request_timeout=5)[group_name(0)].result(timeout=30)
            break
        except KafkaException:
            if time.time() > deadline:
                raise
    offsets_partitions = wait_topic(admin, OFFSETS_TOPIC)
    set_offsets_topic_config(admin, "segment.bytes", str(args.segment_bytes))
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC)])
    configs = next(iter(described.values())).result(timeout=60)
    segment_bytes = int(configs["segment.bytes"].value)
    if segment_bytes != args.segment_bytes:
        raise SystemExit(f"{OFFSETS_TOPIC} segment.bytes is {segment_bytes} after setting {args.segment_bytes}")
    n_rounds = rounds(args)
    start = time.monotonic()
    for k in range(n_rounds):
        if k == n_rounds - 1 and n_rounds > 1:
            # Before the last round: segment.ms = 1 s, so its first append rolls every active segment and
            # all earlier commits become cleanable (the cleaner never touches the active segment).
            set_offsets_topic_config(admin, "segment.ms", "1000")
            time.sleep(1.5)
        futures = []
        for g in range(args.groups):
            tps = [TopicPartition(args.topic, p, expected(g, p, k)) for p in range(args.partitions)]
            futures += admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group_name(g), tps)], request_timeout=60).values()
        for future in futures:
            result = future.result(timeout=120)
            bad = [tp for tp in result.topic_partitions if tp.error is not None]
            if bad:
                raise SystemExit(f"commit failed for {result.group_id}: {bad[0].error}")
    elapsed = time.monotonic() - start
    return {"commits": n_rounds * args.groups * args.partitions, "rounds": n_rounds, "groups": args.groups,
            "partitions": args.partitions, "elapsed_s": elapsed, "offsets_partitions": offsets_partitions,
            "offsets_segment_bytes": segment_bytes}


def verify(args):
    last = rounds(args) - 1
    want = {group_name(g): {p: expected(g, p, last) for p in range(args.partitions)} for g in range(args.groups)}
    admin = admin_client(args.bootstrap)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # the caller has spawned the broker
    started_ns = time.time_ns()
    pending = set(want)
    failed_polls, wrong_answers, wrong_example = 0, 0, None
    deadline = time.monotonic() + args.timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} groups never answered their committed offsets "
                             f"(failed polls {failed_polls}, wrong answers {wrong_answers}, e.g. {wrong_example})")
        futures = {}
        for group in sorted(pending):
            tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
            futures.update(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                                             request_timeout=5))
        for group, future in futures.items():
            try:
                result = future.result(timeout=30)
            except KafkaException:
                failed_polls += 1
                continue
            if any(tp.error is not None for tp in result.topic_partitions):
                failed_polls += 1
                continue
            got = {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == args.topic}
            if got == want[group]:
                pending.discard(group)
            else:
                wrong_answers += 1
                if wrong_example is None:
                    diff = sorted(p for p in set(got) | set(want[group]) if got.get(p) != want[group].get(p))
                    wrong_example = {"group": group, "partitions_read": len(got), "differing": len(diff),
                                     "first": [(p, got.get(p), want[group].get(p)) for p in diff[:3]]}
        if pending:
            time.sleep(0.01)
    done_ns = time.time_ns()
    return {"all_answered_unix_ns": done_ns, "probe_started_unix_ns": started_ns, "groups": len(want),
            "offsets_checked": sum(len(v) for v in want.values()), "failed_polls": failed_polls,
            "wrong_answers": wrong_answers, "wrong_example": wrong_example}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["commit", "verify"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--partitions", type=int, default=100)
    p.add_argument("--commits", type=int, default=1_000_000)
    p.add_argument("--segment-bytes", type=int, default=1 << 20)
    p.add_argument("--timeout-s", type=float, default=600)
    args = p.parse_args()
    out = {"commit": commit, "verify": verify}[args.command](args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
