"""confluent-kafka AdminClient: create/delete topics and the error codes real clients branch on."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from helpers import read_partitions, wait_for, wait_for_topic

TIMEOUT_S = 30


def admin_for(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_error(admin: AdminClient, new_topic: NewTopic) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        admin.create_topics([new_topic])[new_topic.topic].result(timeout=TIMEOUT_S)
    return raised.value.args[0]


def test_create_list_delete_topic(broker, topic_name):
    # Proves: a created topic shows up in Metadata with its partition count, and disappears after delete.
    admin = admin_for(broker)
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])[topic_name].result(
        timeout=TIMEOUT_S
    )
    md = wait_for_topic(admin, topic_name, 3)
    broker_ids = set(admin.list_topics(timeout=10).brokers)
    assert {p.leader for p in md.partitions.values()} <= broker_ids
    assert all(list(p.replicas) == [p.leader] for p in md.partitions.values())

    admin.delete_topics([topic_name])[topic_name].result(timeout=TIMEOUT_S)
    wait_for(
        lambda: topic_name not in admin.list_topics(timeout=10).topics,
        what=f"{topic_name} gone from Metadata",
    )


def test_create_existing_topic_fails_with_topic_already_exists(broker, topic_name):
    # Proves: creating a topic twice answers TOPIC_ALREADY_EXISTS and leaves the first one intact.
    admin = admin_for(broker)
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])[topic_name].result(
        timeout=TIMEOUT_S
    )
    err = create_error(admin, NewTopic(topic_name, num_partitions=5, replication_factor=1))
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err
    wait_for_topic(admin, topic_name, 2)


def test_replication_factor_above_broker_count_fails(broker, topic_name):
    # Proves: asking for more replicas than there are brokers answers INVALID_REPLICATION_FACTOR and creates nothing.
    admin = admin_for(broker)
    broker_count = len(admin.list_topics(timeout=10).brokers)
    err = create_error(admin, NewTopic(topic_name, num_partitions=1, replication_factor=broker_count + 2))
    assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
    assert topic_name not in admin.list_topics(timeout=10).topics


def test_delete_unknown_topic_fails_with_unknown_topic(broker, topic_name):
    # Proves: deleting a topic that never existed answers UNKNOWN_TOPIC_OR_PART.
    admin = admin_for(broker)
    with pytest.raises(KafkaException) as raised:
        admin.delete_topics([topic_name])[topic_name].result(timeout=TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, raised.value


def grow_error(admin: AdminClient, new_partitions: NewPartitions, **options) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        admin.create_partitions([new_partitions], **options)[new_partitions.topic].result(timeout=TIMEOUT_S)
    return raised.value.args[0]


def test_create_partitions_grows_topic_and_new_partitions_take_writes(broker, topic_name):
    # Proves: create_partitions (controller placement and an explicit assignment to the broker) grows the
    # topic in Metadata, validate_only changes nothing, and a producer's records reach a new partition.
    admin = admin_for(broker)
    admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])[topic_name].result(
        timeout=TIMEOUT_S
    )
    wait_for_topic(admin, topic_name, 1)
    admin.create_partitions([NewPartitions(topic_name, 4)], validate_only=True)[topic_name].result(timeout=TIMEOUT_S)
    admin.create_partitions([NewPartitions(topic_name, 2)])[topic_name].result(timeout=TIMEOUT_S)
    wait_for_topic(admin, topic_name, 2)
    broker_id = next(iter(admin.list_topics(timeout=10).brokers))
    admin.create_partitions([NewPartitions(topic_name, 3, replica_assignment=[[broker_id]])])[topic_name].result(
        timeout=TIMEOUT_S
    )
    md = wait_for_topic(admin, topic_name, 3)
    assert list(md.partitions[2].replicas) == [broker_id]

    producer = Producer({"bootstrap.servers": broker.bootstrap, "topic.metadata.refresh.interval.ms": 1000})
    delivered = []
    producer.produce(topic_name, value=b"on-the-new-partition", partition=2, on_delivery=lambda e, m: delivered.append((e, m)))
    assert producer.flush(TIMEOUT_S) == 0
    [(error, message)] = delivered
    assert error is None and message.partition() == 2, error
    records = read_partitions(broker.bootstrap, topic_name, [2])
    assert [m.value() for m in records[2]] == [b"on-the-new-partition"]


def test_create_partitions_refusals(broker, topic_name):
    # Proves: a count that is not an increase answers INVALID_PARTITIONS (validate_only too), an unknown
    # topic UNKNOWN_TOPIC_OR_PART, and assignments that do not match the new partitions or name an
    # unregistered broker INVALID_REPLICA_ASSIGNMENT; none of them changes the topic.
    admin = admin_for(broker)
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])[topic_name].result(
        timeout=TIMEOUT_S
    )
    wait_for_topic(admin, topic_name, 2)
    err = grow_error(admin, NewPartitions(topic_name, 2))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "Topic already has 2 partition(s)." in err.str(), err
    err = grow_error(admin, NewPartitions(topic_name, 1))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "currently has 2 partition(s); 1 would not be an increase." in err.str(), err
    err = grow_error(admin, NewPartitions(topic_name, 1), validate_only=True)
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    err = grow_error(admin, NewPartitions(f"{topic_name}-missing", 3))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err
    broker_id = next(iter(admin.list_topics(timeout=10).brokers))
    err = grow_error(admin, NewPartitions(topic_name, 4, replica_assignment=[[broker_id]]))
    assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, err
    err = grow_error(admin, NewPartitions(topic_name, 3, replica_assignment=[[broker_id + 100]]))
    assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, err
    wait_for_topic(admin, topic_name, 2)
