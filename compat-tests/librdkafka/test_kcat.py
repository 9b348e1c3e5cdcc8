"""kcat (librdkafka's CLI, from Debian) lists, produces and consumes against the broker."""

from __future__ import annotations

import re
import subprocess

from helpers import create_topic

KCAT_TIMEOUT_S = 60


def kcat(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kcat", *args], input=stdin, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S
    )
    assert done.returncode == 0, f"kcat {' '.join(args)} exited {done.returncode}\n{done.stderr}"
    return done.stdout


def test_kcat_metadata_lists_topic(broker, topic_name):
    # Proves: `kcat -L` shows the broker and a created topic with each of its partitions and a leader.
    create_topic(broker.bootstrap, topic_name, 3)
    out = kcat("-L", "-b", broker.bootstrap)
    assert re.search(r"broker \d+ at 127\.0\.0\.1:%d" % broker.port, out), out
    assert f'topic "{topic_name}" with 3 partitions:' in out, out
    section = out.split(f'topic "{topic_name}"', 1)[1].split("topic ", 1)[0]
    partitions = re.findall(r"partition (\d+), leader (-?\d+)", section)
    assert sorted(int(p) for p, _ in partitions) == [0, 1, 2], section
    assert all(int(leader) >= 0 for _, leader in partitions), section


def test_kcat_produce_then_consume_partition(broker, topic_name):
    # Proves: keyed lines produced with `kcat -P` to one partition come back from `kcat -C -o beginning -e` in order.
    create_topic(broker.bootstrap, topic_name, 3)
    partition = 2
    lines = [f"key-{i % 7}:value {i} " + "x" * (i % 50) for i in range(500)]
    # A batch retried after a transient error (seen on Kafka just after topic creation) can land
    # behind later ones unless the producer is idempotent, which keeps produce order the log order.
    kcat(
        "-P", "-b", broker.bootstrap, "-t", topic_name, "-p", str(partition), "-K:",
        "-X", "enable.idempotence=true",
        stdin="\n".join(lines) + "\n",
    )

    out = kcat(
        "-C", "-b", broker.bootstrap, "-t", topic_name, "-p", str(partition),
        "-o", "beginning", "-e", "-q", "-f", "%p %o %k:%s\\n",
    )
    rows = [line.split(" ", 2) for line in out.splitlines()]
    assert [r[2] for r in rows] == lines
    assert all(int(r[0]) == partition for r in rows)
    offsets = [int(r[1]) for r in rows]
    assert offsets == sorted(set(offsets)), "offsets must strictly increase"
    # The other partitions got nothing.
    for other in (0, 1):
        assert kcat("-C", "-b", broker.bootstrap, "-t", topic_name, "-p", str(other), "-o", "beginning", "-e", "-q") == ""
