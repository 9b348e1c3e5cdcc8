"""librdkafka (confluent-kafka) over an SSL listener: produce, group consume and commit with `security.protocol=SSL`,
client certificates with `ssl.client.auth=required`, and the PEM keystore given inline. Both targets get the same
`ssl.*` keys and the same certificates (harness/certs.py)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import read_partitions, wait_for_topic

import certs

RECORD_COUNT = 2_000
PARTITION_COUNT = 2
CONSUME_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def ssl_configs(pki):
    """The SSL listener as a Kafka user configures it: a PEM keystore file and a PEM truststore for client certs."""
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki["server_keystore"],
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": pki["ca"],
    }


def ssl_client(broker, pki, certificate: bool = False, **extra) -> dict:
    conf = {
        "bootstrap.servers": broker.ssl_bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": pki["ca"],
        **extra,
    }
    if certificate:
        conf["ssl.certificate.location"] = pki["client_cert"]
        conf["ssl.key.location"] = pki["client_key"]
    return conf


def round_trip(broker, pki, topic: str, certificate: bool = False) -> None:
    """Create `topic` over SSL, produce RECORD_COUNT records, read them back in a consumer group, commit, and read
    them again by partition: every record once, in order."""
    admin = AdminClient(ssl_client(broker, pki, certificate))
    admin.create_topics([NewTopic(topic, num_partitions=PARTITION_COUNT, replication_factor=1)])[topic].result(30)
    wait_for_topic(admin, topic, PARTITION_COUNT)
    # Metadata over SSL names the SSL port: a client is never sent to the plaintext one.
    brokers = admin.list_topics(timeout=10).brokers
    assert {(b.host, b.port) for b in brokers.values()} == {("127.0.0.1", broker.ssl_port)}

    producer = Producer(ssl_client(broker, pki, certificate, **{"enable.idempotence": True, "linger.ms": 10}))
    acked, errors = [], []

    def on_delivery(err, msg):
        (errors if err else acked).append(err or (msg.partition(), msg.offset()))

    values = [f"tls record {i}".encode() for i in range(RECORD_COUNT)]
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % PARTITION_COUNT, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors[:5]
    assert len(acked) == RECORD_COUNT

    # A group consumer: FindCoordinator over SSL must name the SSL port too.
    consumer = Consumer(
        ssl_client(
            broker, pki, certificate,
            **{"group.id": f"{topic}-group", "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    seen = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(seen) < RECORD_COUNT:
            assert time.monotonic() < deadline, f"the group consumer got {len(seen)} of {RECORD_COUNT} records"
            for message in consumer.consume(1000, 1.0):
                assert message.error() is None, message.error()
                seen.append(message.value())
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITION_COUNT)], timeout=10)
        assert sum(tp.offset for tp in committed) == RECORD_COUNT
    finally:
        consumer.close()
    assert sorted(seen) == sorted(values)

    read = read_partitions(broker.ssl_bootstrap, topic, range(PARTITION_COUNT), extra=ssl_client(broker, pki, certificate))
    for partition, messages in read.items():
        assert [m.value() for m in messages] == values[partition::PARTITION_COUNT]
        assert [m.offset() for m in messages] == list(range(len(messages)))


@pytest.mark.ssl_listener
def test_ssl_produce_consume_round_trip(broker, pki, topic_name):
    # Proves: with security.protocol=SSL and the CA in ssl.ca.location, records produced over the SSL listener come
    # back once and in order through a group consumer and a partition reader, and the plaintext listener still
    # serves its own clients with its own port.
    round_trip(broker, pki, topic_name)
    plain = AdminClient({"bootstrap.servers": broker.bootstrap})
    brokers = plain.list_topics(timeout=10).brokers
    assert {(b.host, b.port) for b in brokers.values()} == {("127.0.0.1", broker.port)}


@pytest.mark.ssl_listener
@pytest.mark.broker_config({"ssl.client.auth": "required"})
def test_ssl_client_certificate_required(broker, pki, topic_name):
    # Proves: with ssl.client.auth=required a client presenting a certificate of the truststore's CA round-trips
    # records, and a client without one gets no metadata.
    round_trip(broker, pki, topic_name, certificate=True)
    anonymous = AdminClient(ssl_client(broker, pki, certificate=False, **{"log_level": 0}))
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)


class TestInlinePemKeystore:
    @pytest.fixture
    def ssl_configs(self, pki):
        """KIP-651's other form: the certificate chain and the key as config values."""
        with open(pki["server_chain"]) as chain, open(pki["server_key"]) as key:
            return {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": chain.read(),
                "ssl.keystore.key": key.read(),
            }

    @pytest.mark.ssl_listener
    def test_inline_pem_keystore(self, broker, pki, topic_name):
        # Proves: a keystore given inline (ssl.keystore.certificate.chain + ssl.keystore.key) serves SSL clients.
        round_trip(broker, pki, topic_name)
