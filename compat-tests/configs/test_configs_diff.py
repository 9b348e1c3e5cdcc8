"""Differential test: DescribeConfigs (all keys, synonyms, documentation) sent to runnel and to
Apache Kafka 4.4 side by side, for a topic with default configs, a topic with overrides and the
broker. Every config name, value, source, flag, type, synonym and documentation string must be
equal, except the differences listed below, each with its reason (also in docs/configuration.md).
This test starts both brokers itself, whatever COMPAT_TARGET says.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from broker import REPO_DIR, Broker, target_from_env
from config_wire import create_topic, describe_configs, incremental_alter_configs

TOPIC, BROKER = 2, 4
SET = 0

# Static broker configs given to both brokers, so the STATIC_BROKER_CONFIG layer is compared too.
STATIC = {"log.retention.hours": 5, "log.segment.bytes": 2000000, "message.max.bytes": 2000000}

# Dynamic broker configs set on both brokers before the broker is compared: a cluster default and a
# per-broker value of the same config, and a cluster default that is a topic default's synonym.
DYNAMIC_DEFAULT = [("log.cleaner.backoff.ms", SET, "10000"), ("log.retention.ms", SET, "7200000")]
DYNAMIC_BROKER = [("log.cleaner.backoff.ms", SET, "20000")]

# Topic overrides set on the second topic (dynamic topic configs on both brokers).
OVERRIDES = {
    "retention.ms": "3600000",
    "cleanup.policy": "compact, delete",
    "max.message.bytes": "2000000",
    "segment.bytes": "16777216",
    "min.cleanable.dirty.ratio": "0.25",
}

# Broker configs whose *values* legitimately differ between the two processes, and why. Names,
# sources, flags, types and documentation must still match.
VALUE_DIFFERS = {
    "advertised.listeners": "each broker listens on its own free port",
    "listeners": "Kafka also listens on its KRaft controller port; runnel has no controller listener",
    "log.dirs": "each broker has its own temp data directory",
    "controller.quorum.voters": "Kafka names its own controller port",
}

# Broker configs the harness gives Kafka in its server.properties (a KRaft combined node needs
# them) and runnel no file at all: on Kafka they are STATIC_BROKER_CONFIG, on runnel Kafka's
# default. Their value and source differ for that reason alone.
KAFKA_HARNESS_STATIC = {
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "auto.create.topics.enable",
    "offsets.topic.replication.factor",
    "offsets.topic.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
}



def _start(target: str) -> Broker:
    b = Broker(target=target, configs=STATIC)
    b.start()
    return b


@pytest.fixture(scope="module")
def brokers():
    binary = os.environ.get("RUNNEL_BIN") or str(REPO_DIR / "target" / "release" / "runnel")
    if target_from_env() == "kafka" and not os.access(binary, os.X_OK):
        # A Kafka-only run (no runnel build) cannot compare; the runnel run always does.
        pytest.skip("the differential test needs a runnel binary (RUNNEL_BIN)")
    started = []
    try:
        for target in ("runnel", "kafka"):
            started.append(_start(target))
        yield {b.target: b for b in started}
    finally:
        for b in started:
            b.cleanup()


def _create_topics(b: Broker, base: str) -> tuple[str, str]:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    plain, custom = f"{base}-plain", f"{base}-custom"
    futures = admin.create_topics(
        [NewTopic(plain, 1, 1), NewTopic(custom, 1, 1, config=OVERRIDES)], operation_timeout=30
    )
    for f in futures.values():
        f.result(timeout=60)
    # Topic metadata reaches Kafka's broker side shortly after the controller commits it.
    deadline = time.time() + 30
    while time.time() < deadline:
        results = describe_configs(b.bootstrap, [(TOPIC, plain), (TOPIC, custom)])
        if all(r["error_code"] == 0 for r in results):
            break
        time.sleep(0.2)
    return plain, custom


def _by_name(result: dict) -> dict:
    assert result["error_code"] == 0, result
    return {c["name"]: c for c in result["configs"]}


def _diff(runnel: dict, kafka: dict, allowed) -> list[str]:
    problems = []
    for name in sorted(set(runnel) | set(kafka)):
        if name not in runnel:
            problems.append(f"{name}: only Kafka reports it")
            continue
        if name not in kafka:
            problems.append(f"{name}: only runnel reports it")
            continue
        r, k = runnel[name], kafka[name]
        for field in ("value", "source", "read_only", "sensitive", "type", "synonyms", "documentation"):
            if r[field] != k[field] and not allowed(name, field):
                problems.append(f"{name}.{field}: runnel {r[field]!r} != kafka {k[field]!r}")
    return problems


def test_topic_configs_match_kafka(brokers):
    """A default topic and a topic with overrides describe identically on both brokers."""
    found = {}
    for target, b in brokers.items():
        plain, custom = _create_topics(b, "diff")
        results = describe_configs(b.bootstrap, [(TOPIC, plain), (TOPIC, custom)])
        found[target] = [_by_name(r) for r in results]
    for i, label in enumerate(("default topic", "topic with overrides")):
        problems = _diff(found["runnel"][i], found["kafka"][i], lambda name, field: False)
        assert not problems, f"{label}:\n" + "\n".join(problems)


def _broker_allowed(name: str, field: str) -> bool:
    if name in VALUE_DIFFERS and field in ("value", "synonyms"):
        return True
    if name in KAFKA_HARNESS_STATIC and field in ("value", "source", "synonyms"):
        return True
    return False


def test_broker_configs_match_kafka(brokers):
    """The broker resource (by node id) lists the same configs, flags and types on both."""
    found = {}
    for target, b in brokers.items():
        [result] = describe_configs(b.bootstrap, [(BROKER, str(b.node_id))])
        found[target] = _by_name(result)
    problems = _diff(found["runnel"], found["kafka"], _broker_allowed)
    assert not problems, "\n".join(problems)


def test_create_topics_configs_match_kafka(brokers):
    """CreateTopics v7 reports the new topic's configs (values and sources) as Kafka's controller does."""
    found = {}
    for target, b in brokers.items():
        result = create_topic(b.bootstrap, "diff-created", {"cleanup.policy": "compact, delete"})
        assert result["error_code"] == 0, result
        found[target] = {c[0]: c for c in result["configs"]}
    problems = [
        f"{name}: runnel {found['runnel'].get(name)} != kafka {found['kafka'].get(name)}"
        for name in sorted(set(found["runnel"]) | set(found["kafka"]))
        if found["runnel"].get(name) != found["kafka"].get(name)
    ]
    assert not problems, "\n".join(problems)


def test_dynamic_layers_match_kafka(brokers):
    """After the same dynamic broker configs on both, the cluster default, the broker and a default
    topic describe identically (the topic's retention.ms now comes from log.retention.ms)."""
    found = {}
    for target, b in brokers.items():
        answers = incremental_alter_configs(
            b.bootstrap, [(BROKER, "", DYNAMIC_DEFAULT), (BROKER, str(b.node_id), DYNAMIC_BROKER)]
        )
        assert answers == [(0, None), (0, None)], answers
        plain, _ = _create_topics(b, "dynamic")
        def described():
            results = describe_configs(b.bootstrap, [(BROKER, ""), (BROKER, str(b.node_id)), (TOPIC, plain)])
            maps = [_by_name(r) for r in results]
            return maps if maps[2]["retention.ms"]["value"] == "7200000" else None
        deadline = time.time() + 30
        maps = described()
        while maps is None and time.time() < deadline:
            time.sleep(0.2)
            maps = described()
        assert maps is not None, f"{target}: dynamic log.retention.ms never reached the topic"
        found[target] = maps
    for i, label in enumerate(("cluster default", "broker", "default topic")):
        allowed = _broker_allowed if i == 1 else (lambda name, field: False)
        problems = _diff(found["runnel"][i], found["kafka"][i], allowed)
        assert not problems, f"{label}:\n" + "\n".join(problems)
