"""confluent-kafka AdminClient: describe_configs with synonyms and incremental_alter_configs on topics
and brokers (SET, DELETE, APPEND, SUBTRACT), with the errors Kafka gives for bad changes."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from helpers import wait_for, wait_for_topic

TIMEOUT_S = 30


def admin_for(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def describe(admin, resource: ConfigResource) -> dict:
    # librdkafka always asks for synonyms.
    return admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)


def incremental(admin, resource: ConfigResource, ops, validate_only=False):
    entries = [ConfigEntry(name, value, incremental_operation=op) for name, value, op in ops]
    target = ConfigResource(resource.restype, resource.name, incremental_configs=entries)
    return admin.incremental_alter_configs([target], validate_only=validate_only)[target].result(timeout=TIMEOUT_S)


def incremental_error(admin, resource, ops) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        incremental(admin, resource, ops)
    return raised.value.args[0]


def make_topic(admin, topic_name: str) -> ConfigResource:
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=TIMEOUT_S)
    wait_for_topic(admin, topic_name, 1)
    return ConfigResource(ConfigResource.Type.TOPIC, topic_name)


def test_describe_topic_configs_with_synonyms(broker, topic_name):
    # Proves: describe_configs (with synonyms) gives Kafka's defaults, sources and synonym chains for a topic,
    # and a default retention.ms lists no log.retention.* synonym, as Kafka does.
    admin = admin_for(broker)
    topic = make_topic(admin, topic_name)
    configs = describe(admin, topic)
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["retention.ms"].synonyms == {}
    segment = configs["segment.bytes"]
    assert [(s.name, s.value, s.source) for s in segment.synonyms.values()] == [
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG.value)
    ]
    assert not configs["cleanup.policy"].is_read_only and not configs["cleanup.policy"].is_sensitive


def test_incremental_alter_topic_configs(broker, topic_name):
    # Proves: SET, APPEND, SUBTRACT and DELETE change a topic's configs as Kafka does; validate_only changes nothing;
    # APPEND to a non-list config and bad values fail with INVALID_CONFIG.
    admin = admin_for(broker)
    topic = make_topic(admin, topic_name)
    SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
    APPEND, SUBTRACT = AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT

    incremental(admin, topic, [("retention.ms", "5000", SET)], validate_only=True)
    assert describe(admin, topic)["retention.ms"].value == "604800000"

    incremental(admin, topic, [("retention.ms", "5000", SET), ("cleanup.policy", "compact", APPEND)])
    configs = wait_for(lambda: (c := describe(admin, topic))["retention.ms"].value == "5000" and c,
                       timeout_s=TIMEOUT_S, what="retention.ms set")
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete,compact"
    syn = configs["retention.ms"].synonyms
    assert [(s.name, s.source) for s in syn.values()] == [("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)]

    incremental(admin, topic, [("cleanup.policy", "delete", SUBTRACT), ("retention.ms", None, DELETE)])
    configs = wait_for(lambda: (c := describe(admin, topic))["retention.ms"].value == "604800000" and c,
                       timeout_s=TIMEOUT_S, what="retention.ms deleted")
    assert configs["cleanup.policy"].value == "compact"

    err = incremental_error(admin, topic, [("retention.ms", "1", APPEND)])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "because its type is not LIST" in err.str(), err
    err = incremental_error(admin, topic, [("segment.bytes", "10", SET)])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "Value must be at least 1048576" in err.str(), err


def test_incremental_alter_broker_configs(broker):
    # Proves: a dynamic per-broker config is set, described with its source and synonyms, and deleted; read-only
    # configs are refused with INVALID_REQUEST and Kafka's message. (confluent-kafka cannot name the
    # cluster-default resource "", and sends a broker resource to that broker; the kafka-configs tests cover
    # the default.)
    admin = admin_for(broker)
    this = ConfigResource(ConfigResource.Type.BROKER, "1")
    incremental(admin, this, [("log.cleaner.backoff.ms", "20000", AlterConfigOpType.SET)])
    configs = wait_for(lambda: (c := describe(admin, this))["log.cleaner.backoff.ms"].value == "20000" and c,
                       timeout_s=TIMEOUT_S, what="per-broker config set")
    entry = configs["log.cleaner.backoff.ms"]
    assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # confluent-kafka keys synonyms by name, so the dynamic and default entries of one name collapse to one.
    assert list(entry.synonyms) == ["log.cleaner.backoff.ms"], entry.synonyms
    assert configs["log.dirs"].is_read_only
    err = incremental_error(admin, this, [("log.dirs", "/x", AlterConfigOpType.SET)])
    assert err.code() == KafkaError.INVALID_REQUEST, err
    assert "Cannot update these configs dynamically: [log.dirs]" in err.str(), err
    incremental(admin, this, [("log.cleaner.backoff.ms", None, AlterConfigOpType.DELETE)])
    wait_for(lambda: describe(admin, this)["log.cleaner.backoff.ms"].value == "15000",
             timeout_s=TIMEOUT_S, what="per-broker config removed")
