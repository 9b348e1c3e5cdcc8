"""The quickstart (docs/quickstart.md) works as written, with Apache Kafka's own CLI tools.

Every ```sh block runs, in order, from a directory whose bin/ holds the kafka-*.sh tools the page
uses (launchers for the cached Kafka jars, as a Kafka download's bin/ would hold), with
`localhost:9092` pointed at the test's broker. Each must exit 0, and a ```text block that directly
follows one is exactly what that block printed. The Korean page (docs/quickstart.ko.md) must carry
the very same blocks, so one run proves both.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from broker import REPO_DIR
from helpers import java_tool_argv

DOCS = REPO_DIR / "docs"
QUICKSTART = DOCS / "quickstart.md"
TRANSLATIONS = [DOCS / "quickstart.ko.md"]

# What a Kafka 4.4 download's bin/kafka-*.sh scripts launch.
TOOLS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer.sh": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer.sh": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups.sh": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-configs.sh": "org.apache.kafka.tools.ConfigCommand",
    "kafka-get-offsets.sh": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-producer-perf-test.sh": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-transactions.sh": "org.apache.kafka.tools.TransactionsCommand",
}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(path: Path) -> list[tuple[str, str]]:
    """The page's fenced blocks as (info string, body), in order."""
    return FENCE.findall(path.read_text())


def steps(path: Path) -> list[tuple[str, str | None]]:
    """Each `sh` block with the `text` block right after it (its expected output), if any."""
    found: list[tuple[str, str | None]] = []
    previous = None
    for lang, body in blocks(path):
        if lang == "sh":
            found.append((body, None))
        elif lang == "text" and previous == "sh":
            found[-1] = (found[-1][0], body)
        previous = lang
    return found


def make_bin(root: Path) -> None:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for script, main_class in TOOLS.items():
        path = bin_dir / script
        path.write_text(f'#!/bin/sh\nexec {shlex.join(java_tool_argv(main_class))} "$@"\n')
        path.chmod(0o755)


def test_quickstart_commands_run_as_written(broker, tmp_path):
    # Proves: a Kafka user following docs/quickstart.md gets every command to work and sees the output it shows.
    found = steps(QUICKSTART)
    assert len(found) >= 10, "the quickstart lost its commands"
    make_bin(tmp_path)
    for number, (command, expected) in enumerate(found, 1):
        script = command.replace("localhost:9092", broker.bootstrap)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, (
            f"quickstart step {number} failed ({done.returncode}):\n{command}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        if expected is not None:
            assert done.stdout.splitlines() == expected.splitlines(), (
                f"quickstart step {number} printed something else:\n{command}\n{done.stdout}"
            )


def test_translations_carry_the_same_commands_and_outputs():
    # Proves: the translated quickstarts run exactly what the tested English page runs.
    runnable = [b for b in blocks(QUICKSTART) if b[0] in ("sh", "text")]
    for page in TRANSLATIONS:
        assert [b for b in blocks(page) if b[0] in ("sh", "text")] == runnable, page.name
