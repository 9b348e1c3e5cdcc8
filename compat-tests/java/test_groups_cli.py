"""Kafka 4.4's own group tooling: console consumer with --group (classic and KIP-848) and kafka-consumer-groups."""

from __future__ import annotations

import re
import subprocess

import pytest
from confluent_kafka import TopicPartition
from group_helpers import (
    CONSUMER_GROUP_BROKER_CONFIG,
    Consumers,
    assigned_partitions,
    committed_offsets,
    poll_until,
    produce,
)
from helpers import create_topic, java_tool_argv, run_java_tool, wait_for

CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

# KIP-848 settings are broker-side only; they are harmless for the classic tests in this file.
pytestmark = pytest.mark.broker_config(CONSUMER_GROUP_BROKER_CONFIG)


def consumer_groups(broker, *args: str) -> subprocess.CompletedProcess:
    """kafka-consumer-groups; it reports some failures (e.g. a failed --delete) on stdout with exit code 0."""
    argv = java_tool_argv(CONSUMER_GROUPS, "--bootstrap-server", broker.bootstrap, *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def listed_groups(broker, *extra: str) -> dict[str, list[str]]:
    """`--list [--type|--state]` -> {group: [other columns]} (no header)."""
    done = consumer_groups(broker, "--list", *extra)
    assert done.returncode == 0, done
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
    if extra:
        assert rows and rows[0][0] == "GROUP", done.stdout
        rows = rows[1:]
    return {row[0]: row[1:] for row in rows}


def describe_offsets(broker, group: str) -> dict[int, dict[str, str]]:
    """`--describe --group G` -> {partition: {column: value}} for the table's rows."""
    done = consumer_groups(broker, "--describe", "--group", group)
    assert done.returncode == 0, done
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    header_at = next(i for i, line in enumerate(lines) if line.split()[:3] == ["GROUP", "TOPIC", "PARTITION"])
    header = lines[header_at].split()
    rows = {}
    for line in lines[header_at + 1 :]:
        row = dict(zip(header, line.split()))
        assert row["GROUP"] == group, done.stdout
        rows[int(row["PARTITION"])] = row
    return rows


def describe_state(broker, group: str) -> dict[str, str]:
    """`--describe --group G --state` -> {column: value} of its single row (COORDINATOR (ID) is two words)."""
    done = consumer_groups(broker, "--describe", "--group", group, "--state")
    assert done.returncode == 0, done
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    header_at = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    header = lines[header_at].replace("COORDINATOR (ID)", "COORDINATOR").split()
    values = lines[header_at + 1].split()
    # The coordinator cell is "host:port  (id)": two tokens.
    values = values[:1] + [" ".join(values[1:3])] + values[3:]
    row = dict(zip(header, values))
    assert row["GROUP"] == group, done.stdout
    return row


def console_consume(broker, topic: str, group: str, count: int, *extra: str) -> list[tuple[int, int, str]]:
    """kafka-console-consumer --group: exactly `count` records as (partition, offset, value), sorted."""
    out = run_java_tool(
        CONSOLE_CONSUMER, "--bootstrap-server", broker.bootstrap, "--topic", topic, "--group", group,
        "--max-messages", str(count), "--timeout-ms", "60000",
        "--formatter-property", "print.partition=true", "--formatter-property", "print.offset=true", *extra,
    )
    return sorted(parse_console_line(line) for line in out.splitlines() if line.startswith("Partition:"))


def parse_console_line(line: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"Partition:(\d+)\tOffset:(\d+)\t(.*)", line)
    assert m, line
    return int(m.group(1)), int(m.group(2)), m.group(3)


def flat(acked: dict[int, list[tuple[int, str]]]) -> list[tuple[int, int, str]]:
    return sorted((p, offset, value) for p, records in acked.items() for offset, value in records)


def ends(*acked_maps) -> dict[int, int]:
    out: dict[int, int] = {}
    for acked in acked_maps:
        for p, records in acked.items():
            if records:
                out[p] = max(out.get(p, 0), records[-1][0] + 1)
    return out


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_console_consumer_group_consumes_commits_resumes(broker, topic_name, protocol):
    # Proves: kafka-console-consumer --group (classic or group.protocol=consumer) reads every record once, commits its position on exit, a second run resumes there, and kafka-consumer-groups lists the group with its type.
    group = f"console-{protocol}-{topic_name}"
    create_topic(broker.bootstrap, topic_name, 3)
    first = produce(broker.bootstrap, topic_name, {0: 11, 1: 4, 2: 7}, tag="first")
    proto = ("--consumer-property", f"group.protocol={protocol}")
    total = sum(len(v) for v in first.values())
    assert console_consume(broker, topic_name, group, total, "--from-beginning", *proto) == flat(first)

    with Consumers(broker.bootstrap, group) as members:
        assert committed_offsets(members.new(), topic_name, range(3)) == ends(first)
    assert listed_groups(broker, "--type")[group] == [{"classic": "Classic", "consumer": "Consumer"}[protocol]]

    second = produce(broker.bootstrap, topic_name, {0: 1, 1: 2, 2: 3}, tag="second")
    # No --from-beginning: this run starts at the group's committed offsets.
    assert console_consume(broker, topic_name, group, 6, *proto) == flat(second)
    with Consumers(broker.bootstrap, group) as members:
        assert committed_offsets(members.new(), topic_name, range(3)) == ends(first, second)


def test_consumer_groups_list_describe_reset_delete(broker, topic_name):
    # Proves: kafka-consumer-groups lists a group, describes per-partition CURRENT-OFFSET/LOG-END-OFFSET/LAG as committed and produced, resets an inactive group to earliest (a consumer then re-reads everything), refuses to delete an active group (GroupNotEmpty) and deletes an inactive one.
    partitions = range(3)
    group = f"cli-{topic_name}"
    create_topic(broker.bootstrap, topic_name, 3)
    acked = produce(broker.bootstrap, topic_name, {0: 9, 1: 3, 2: 14})
    end = ends(acked)
    processed = {0: 4, 1: 3, 2: 1}  # records per partition the application says it finished
    committed = {p: acked[p][processed[p] - 1][0] + 1 for p in partitions}
    with Consumers(broker.bootstrap, group) as members:
        c = members.new(**{"client.id": "cli-test-member"})
        c.subscribe([topic_name])
        poll_until([c], lambda: assigned_partitions(c) == set(partitions), what="the member owns every partition")
        c.commit(offsets=[TopicPartition(topic_name, p, o) for p, o in committed.items()], asynchronous=False)
        assert committed_offsets(c, topic_name, partitions) == committed

        # While the member is alive the group is not empty: --describe names it, --delete is refused.
        rows = describe_offsets(broker, group)
        assert sorted(rows) == list(partitions)
        assert len({row["CONSUMER-ID"] for row in rows.values()} - {"-"}) == 1, rows
        assert {row["CLIENT-ID"] for row in rows.values()} == {"cli-test-member"}, rows
        state = describe_state(broker, group)
        assert (state["STATE"], state["#MEMBERS"]) == ("Stable", "1"), state
        done = consumer_groups(broker, "--delete", "--group", group)
        assert "GroupNotEmptyException" in done.stdout + done.stderr, done
        assert group in listed_groups(broker)
        members.close(c)

    assert group in listed_groups(broker)

    def describe_without_members():
        rows = describe_offsets(broker, group)
        return rows if all(row["CONSUMER-ID"] == "-" for row in rows.values()) else None

    rows = wait_for(describe_without_members, what="describe without members after the member left")
    state = describe_state(broker, group)
    assert (state["STATE"], state["#MEMBERS"]) == ("Empty", "0"), state
    assert listed_groups(broker, "--state")[group] == ["Empty"]
    assert sorted(rows) == list(partitions)
    for p, row in rows.items():
        assert row["TOPIC"] == topic_name
        assert int(row["CURRENT-OFFSET"]) == committed[p], row
        assert int(row["LOG-END-OFFSET"]) == end[p], row
        assert int(row["LAG"]) == end[p] - committed[p], row

    done = consumer_groups(broker, "--reset-offsets", "--to-earliest", "--execute", "--topic", topic_name, "--group", group)
    assert done.returncode == 0, done
    reset_rows = [line.split() for line in done.stdout.splitlines() if line.startswith(group)]
    earliest = {p: acked[p][0][0] for p in partitions}
    assert {int(r[2]): int(r[3]) for r in reset_rows if r[1] == topic_name} == earliest, done.stdout
    with Consumers(broker.bootstrap, group) as members:
        assert committed_offsets(members.new(), topic_name, partitions) == earliest
    # No --from-beginning: the console consumer starts at the reset offsets, i.e. re-reads everything.
    assert console_consume(broker, topic_name, group, sum(len(v) for v in acked.values())) == flat(acked)

    done = consumer_groups(broker, "--delete", "--group", group)
    assert done.returncode == 0, done
    assert f"Deletion of requested consumer groups ('{group}') was successful." in done.stdout, done
    assert group not in listed_groups(broker)
    with Consumers(broker.bootstrap, group) as members:
        assert all(o < 0 for o in committed_offsets(members.new(), topic_name, partitions).values())
