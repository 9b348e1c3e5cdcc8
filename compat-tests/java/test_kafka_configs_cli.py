"""kafka-configs (Apache Kafka's ConfigCommand) against the broker: describe every topic and broker
config, alter and delete topic configs, and set dynamic broker configs per broker and cluster-wide."""

from __future__ import annotations

import re
import subprocess

from confluent_kafka.admin import AdminClient
from helpers import java_tool_argv, run_java_tool, wait_for, wait_for_topic

CONFIGS = "org.apache.kafka.tools.ConfigCommand"
TOPICS = "org.apache.kafka.tools.TopicCommand"
LINE = re.compile(r"^\s+(\S+?)=(.*?) sensitive=(true|false) synonyms=\{(.*)\}$")


def configs_cli(broker, *args: str) -> str:
    return run_java_tool(CONFIGS, "--bootstrap-server", broker.bootstrap, *args)


def configs_cli_fails(broker, *args: str) -> str:
    """Runs kafka-configs expecting it to fail; returns what it printed."""
    done = subprocess.run(
        java_tool_argv(CONFIGS, "--bootstrap-server", broker.bootstrap, *args),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0, f"expected a failure\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout + done.stderr


def parse(text: str) -> dict[str, tuple[str, str]]:
    """`name=value sensitive=x synonyms={...}` lines -> {name: (value, synonyms)}."""
    found = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(1)] = (m.group(2), m.group(4))
    return found


def create(broker, topic: str) -> None:
    run_java_tool(TOPICS, "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
                  "--partitions", "1", "--replication-factor", "1")
    wait_for_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), topic, 1)


def describe_topic(broker, topic: str, *extra: str) -> dict:
    return parse(configs_cli(broker, "--describe", "--entity-type", "topics", "--entity-name", topic, *extra))


def test_describe_all_topic_configs(broker, topic_name):
    # Proves: --describe --all lists every topic config of Kafka 4.4 with its default and Kafka's synonyms.
    create(broker, topic_name)
    configs = describe_topic(broker, topic_name, "--all")
    assert len(configs) >= 35, configs
    assert configs["retention.ms"] == ("604800000", ""), configs["retention.ms"]
    assert configs["segment.bytes"] == ("1073741824", "DEFAULT_CONFIG:log.segment.bytes=1073741824")
    assert configs["cleanup.policy"] == ("delete", "DEFAULT_CONFIG:log.cleanup.policy=delete")
    assert configs["max.message.bytes"] == ("1048588", "DEFAULT_CONFIG:message.max.bytes=1048588")
    # Without --all only the topic's own configs are listed: none yet.
    assert describe_topic(broker, topic_name) == {}


def test_alter_then_delete_topic_config(broker, topic_name):
    # Proves: --add-config sets retention.ms (a dynamic topic config, listed with its synonyms) and --delete-config removes it.
    create(broker, topic_name)
    out = configs_cli(broker, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                      "--add-config", "retention.ms=3600000,cleanup.policy=[compact,delete]")
    assert f"Completed updating config for topic {topic_name}." in out, out
    own = wait_for(lambda: describe_topic(broker, topic_name) or None, timeout_s=30, what="dynamic topic configs")
    # log.retention.hours ranks below log.retention.ms, so Kafka lists it as no synonym.
    assert own["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG:retention.ms=3600000"), own
    assert own["cleanup.policy"][0] == "compact,delete", own
    configs_cli(broker, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                "--delete-config", "retention.ms")
    own = wait_for(lambda: (c := describe_topic(broker, topic_name)) and "retention.ms" not in c and c,
                   timeout_s=30, what="retention.ms removed")
    assert set(own) == {"cleanup.policy"}, own
    assert describe_topic(broker, topic_name, "--all")["retention.ms"] == ("604800000", "")
    # A bad value is refused with Kafka's message and changes nothing.
    out = configs_cli_fails(broker, "--alter", "--entity-type", "topics", "--entity-name", topic_name,
                            "--add-config", "retention.ms=abc")
    assert "Invalid value abc for configuration retention.ms: Not a number of type LONG" in out, out


def test_describe_all_broker_configs(broker):
    # Proves: --describe --all for the broker lists Kafka's broker configs with values and synonyms.
    configs = parse(configs_cli(broker, "--describe", "--entity-type", "brokers", "--entity-name", "1", "--all"))
    assert len(configs) >= 300, len(configs)
    assert configs["log.retention.hours"] == ("168", "DEFAULT_CONFIG:log.retention.hours=168")
    assert configs["message.max.bytes"] == ("1048588", "DEFAULT_CONFIG:message.max.bytes=1048588")
    assert configs["node.id"][0] == "1", configs["node.id"]
    # Passwords are never shown.
    assert configs["ssl.key.password"][0] == "null", configs["ssl.key.password"]


def test_dynamic_broker_configs_default_and_per_broker(broker, topic_name):
    # Proves: a cluster-wide and a per-broker dynamic config are stored and described with their layers, a
    # cluster default of log.retention.ms becomes the default of topics, and read-only configs are refused.
    create(broker, topic_name)
    configs_cli(broker, "--alter", "--entity-type", "brokers", "--entity-default",
                "--add-config", "log.cleaner.threads=2,log.retention.ms=7200000")
    default = wait_for(
        lambda: (c := parse(configs_cli(broker, "--describe", "--entity-type", "brokers", "--entity-default")))
        and "log.cleaner.threads" in c and c,
        timeout_s=30, what="cluster-default configs")
    assert default["log.cleaner.threads"] == ("2", "DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.threads=2"), default
    configs_cli(broker, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                "--add-config", "log.cleaner.threads=3")
    per_broker = wait_for(
        lambda: (c := parse(configs_cli(broker, "--describe", "--entity-type", "brokers", "--entity-name", "1")))
        and "log.cleaner.threads" in c and c,
        timeout_s=30, what="per-broker configs")
    assert per_broker["log.cleaner.threads"] == (
        "3",
        "DYNAMIC_BROKER_CONFIG:log.cleaner.threads=3, DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.threads=2, "
        "DEFAULT_CONFIG:log.cleaner.threads=1",
    ), per_broker
    topic = wait_for(
        lambda: (c := describe_topic(broker, topic_name, "--all"))["retention.ms"][0] == "7200000" and c,
        timeout_s=30, what="topic default follows log.retention.ms")
    assert topic["retention.ms"][1] == (
        "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000, DEFAULT_CONFIG:log.retention.hours=168"
    ), topic["retention.ms"]
    out = configs_cli_fails(broker, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                            "--add-config", "log.dirs=/elsewhere")
    assert "Cannot update these configs dynamically: [log.dirs]" in out, out
    configs_cli(broker, "--alter", "--entity-type", "brokers", "--entity-default",
                "--delete-config", "log.cleaner.threads,log.retention.ms")
    wait_for(lambda: describe_topic(broker, topic_name, "--all")["retention.ms"] == ("604800000", ""),
             timeout_s=30, what="topic default back to Kafka's")


def test_refused_changes_answer_kafkas_errors(broker, topic_name):
    # Proves: refused config changes fail with Kafka's exception types and messages: unknown topic, per-broker
    # configs at the cluster level, security configs without a listener prefix, removing the cluster-level
    # min.insync.replicas, an unknown logger, conflicting compaction lags, remote storage; and the root logger's
    # level can be set.
    create(broker, topic_name)
    topic = topic_name
    cases = [
        (("--entity-type", "topics", "--entity-name", "no-such-topic", "--add-config", "retention.ms=5"),
         "UnknownTopicOrPartitionException: The topic 'no-such-topic' does not exist."),
        (("--entity-type", "brokers", "--entity-default", "--add-config", "listeners=PLAINTEXT://:1"),
         "InvalidRequestException: Cannot update these configs at default cluster level, broker id must be "
         "specified: [listeners]"),
        (("--entity-type", "brokers", "--entity-default", "--add-config", "ssl.keystore.location=/x"),
         "InvalidRequestException: These security configs can be dynamically updated only per-listener using "
         "the listener prefix: [ssl.keystore.location]"),
        (("--entity-type", "brokers", "--entity-default", "--delete-config", "min.insync.replicas"),
         "InvalidConfigurationException: Cluster-level min.insync.replicas cannot be removed while ELR is enabled."),
        (("--entity-type", "broker-loggers", "--entity-name", "1", "--add-config", "no.such.logger=DEBUG"),
         "Invalid broker logger(s): no.such.logger"),
        (("--entity-type", "topics", "--entity-name", topic,
          "--add-config", "min.compaction.lag.ms=10,max.compaction.lag.ms=5"),
         "InvalidConfigurationException: conflict topic config setting min.compaction.lag.ms (10) > "
         "max.compaction.lag.ms (5)"),
        (("--entity-type", "topics", "--entity-name", topic, "--add-config", "compression.gzip.level=0"),
         "InvalidConfigurationException: Invalid value 0 for configuration compression.gzip.level: Value must be "
         "between 1 and 9 or equal to -1"),
        (("--entity-type", "topics", "--entity-name", topic, "--add-config", "leader.replication.throttled.replicas=x"),
         "InvalidConfigurationException: Invalid value [x] for configuration leader.replication.throttled.replicas"),
        (("--entity-type", "topics", "--entity-name", topic, "--add-config", "remote.storage.enable=true"),
         "InvalidConfigurationException: Tiered Storage functionality is disabled in the broker. Topic cannot be "
         "configured with remote log storage."),
    ]
    for args, expected in cases:
        out = configs_cli_fails(broker, "--alter", *args)
        assert expected in out, f"{args}: {out[-2000:]}"
    out = configs_cli(broker, "--alter", "--entity-type", "broker-loggers", "--entity-name", "1",
                      "--add-config", "root=WARN")
    assert "Completed updating config for broker-logger 1." in out, out
    loggers = parse(configs_cli(broker, "--describe", "--entity-type", "broker-loggers", "--entity-name", "1"))
    assert loggers["root"] == ("WARN", ""), loggers
