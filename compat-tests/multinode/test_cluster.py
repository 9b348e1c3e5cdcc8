"""Three nodes as one cluster, seen through librdkafka (confluent-kafka) and Kafka's own CLI tools.

Runs only in 3-node mode (`compat-tests/run.sh --nodes 3 --target kafka|runnel`); every test here shares the
run's `cluster` fixture (three processes, each broker and controller) and leaves all nodes running.
Tests that kill nodes are in test_controller_failover.py, each with a cluster of its own.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import run_java_tool, wait_for, wait_for_topic

pytestmark = pytest.mark.nodes3

TOPICS = "org.apache.kafka.tools.TopicCommand"
API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand"
QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
CLUSTER_TOOL = "org.apache.kafka.tools.ClusterTool"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"

# Partitions of the spread topic: a multiple of the node count so every stripe is whole.
SPREAD_PARTITIONS = 30


def admin_for(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_rf1(cluster, topic: str, partitions: int):
    admin = admin_for(cluster.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=60)
    return wait_for_topic(admin, topic, partitions, timeout_s=60)


def cluster_id(bootstrap: str) -> str:
    admin = admin_for(bootstrap)  # held until the future resolves: a dropped client cancels its requests
    return admin.describe_cluster(request_timeout=10).result(timeout=15).cluster_id


def leaders(cluster, topic: str) -> dict[int, int]:
    md = admin_for(cluster.bootstrap).list_topics(topic=topic, timeout=10).topics[topic]
    return {p: md.partitions[p].leader for p in md.partitions}


# ---- every client sees every broker ---------------------------------------------------------------


def test_librdkafka_sees_all_three_brokers_from_every_node(cluster):
    # Proves: Metadata from any one node lists all three brokers with the host and port each advertises,
    # and DescribeCluster answers the same cluster id and three nodes everywhere, its controller one of them.
    expected = {n.node_id: (n.bootstrap.rsplit(":", 1)[0], n.port) for n in cluster.nodes}
    cluster_ids = set()
    for n in cluster.nodes:
        admin = admin_for(n.bootstrap)  # one node only: the others come from Metadata
        brokers = admin.list_topics(timeout=10).brokers
        assert {b: (m.host, m.port) for b, m in brokers.items()} == expected, f"Metadata from node {n.node_id}"
        described = admin.describe_cluster(request_timeout=10).result(timeout=15)
        assert {(x.id, x.host, x.port) for x in described.nodes} == {(i, h, p) for i, (h, p) in expected.items()}
        assert described.controller is not None and described.controller.id in expected, described.controller
        assert described.cluster_id
        cluster_ids.add(described.cluster_id)
    assert len(cluster_ids) == 1, cluster_ids


def test_java_cli_sees_all_three_brokers(cluster):
    # Proves: kafka-broker-api-versions, bootstrapped from one node, reaches all three brokers, each unfenced
    # at the address it advertises, each answering ApiVersions.
    out = run_java_tool(API_VERSIONS, "--bootstrap-server", cluster.nodes[0].bootstrap)
    rows = re.findall(r"^(\S+):(\d+) \(id: (\d+) rack: (\S+) isFenced: (\w+)\) -> \(", out, re.M)
    assert sorted((int(i), f"{h}:{p}", fenced) for h, p, i, _, fenced in rows) == sorted(
        (n.node_id, n.bootstrap, "false") for n in cluster.nodes
    ), out
    # Every broker lists at least Produce, Fetch and Metadata as usable.
    for api in ("Produce(0)", "Fetch(1)", "Metadata(3)"):
        assert out.count(api) == 3, out


def test_kafka_cluster_cluster_id(cluster):
    # Proves: kafka-cluster cluster-id prints the id DescribeCluster reports, asked through any node.
    expected = cluster_id(cluster.bootstrap)
    for n in cluster.nodes:
        out = run_java_tool(CLUSTER_TOOL, "cluster-id", "--bootstrap-server", n.bootstrap)
        assert out.strip() == f"Cluster ID: {expected}", out


# ---- placement ----------------------------------------------------------------------------------------


def test_rf1_topic_is_striped_over_all_three_brokers(cluster, topic_name):
    # Proves: a 30-partition RF-1 topic has leaders on every broker, placed as Kafka's StripedReplicaPlacer
    # places them without racks: each run of 3 consecutive partitions (0-2, 3-5, ...) uses each broker once
    # (the placer shuffles its broker list every 3 placements, so which broker comes first is random),
    # and replicas = ISR = [leader]. kafka-topics --describe shows the same layout.
    md = create_rf1(cluster, topic_name, SPREAD_PARTITIONS)
    ids = {n.node_id for n in cluster.nodes}
    layout = {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in md.partitions.items()}
    for p, (leader, replicas, isr) in layout.items():
        assert replicas == [leader] and isr == [leader], (p, layout[p])
    counts = Counter(leader for leader, _, _ in layout.values())
    assert set(counts) == ids, counts
    assert set(counts.values()) == {SPREAD_PARTITIONS // len(ids)}, counts
    for start in range(0, SPREAD_PARTITIONS, len(ids)):
        stripe = [layout[p][0] for p in range(start, start + len(ids))]
        assert sorted(stripe) == sorted(ids), f"partitions {start}..{start + len(ids) - 1}: {stripe}"

    text = run_java_tool(TOPICS, "--bootstrap-server", cluster.nodes[1].bootstrap, "--describe", "--topic", topic_name)
    rows = re.findall(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]+)", text)
    assert {int(p): int(leader) for p, leader, _, _ in rows} == {p: v[0] for p, v in layout.items()}, text


def test_produce_and_consume_through_the_cluster(cluster, topic_name):
    # Proves: a producer bootstrapped from one node writes to partitions led by all three, and a group
    # consumer bootstrapped from another node reads every record back exactly once, in order per partition.
    create_rf1(cluster, topic_name, 9)
    assert set(leaders(cluster, topic_name).values()) == {n.node_id for n in cluster.nodes}
    producer = Producer({"bootstrap.servers": cluster.nodes[0].bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    errors = []

    def on_delivery(err, msg):
        (errors if err else acked).append(err or (msg.partition(), msg.offset(), msg.value()))

    sent = 3000
    for i in range(sent):
        producer.produce(topic_name, key=f"k{i % 97}", value=f"v{i}".encode(), partition=i % 9, on_delivery=on_delivery)
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    assert len(acked) == sent

    consumer = Consumer({
        "bootstrap.servers": cluster.nodes[2].bootstrap, "group.id": f"g-{topic_name}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic_name])
    got = []
    deadline = time.monotonic() + 90
    try:
        while len(got) < sent and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.partition(), msg.offset(), msg.value()))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(got) == sorted(acked)
    for p in range(9):
        offsets = [o for part, o, _ in got if part == p]
        assert offsets == sorted(offsets) and len(offsets) == len(set(offsets)), f"partition {p}"


def coordinator_of(admin: AdminClient, group: str) -> int:
    """The broker FindCoordinator names for `group` (DescribeGroups reports the coordinator it asked)."""
    def ask():
        try:
            return admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15).coordinator.id
        except KafkaException as e:
            if e.args[0].retriable() or e.args[0].code() == KafkaError.COORDINATOR_LOAD_IN_PROGRESS:
                return None
            raise

    return wait_for(ask, timeout_s=60, what=f"coordinator of {group}")


def test_consumer_groups_with_coordinators_on_different_brokers(cluster, topic_name):
    # Proves: group coordinators are spread (FindCoordinator names a different broker for different groups,
    # every broker coordinating some group), and a group works on each: it consumes, commits, and its
    # committed offsets read back through any node; DescribeGroups answers from the coordinator it names.
    ids = {n.node_id for n in cluster.nodes}
    create_rf1(cluster, topic_name, 3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(300):
        producer.produce(topic_name, value=f"r{i}".encode(), partition=i % 3)
    assert producer.flush(60) == 0

    admin = admin_for(cluster.bootstrap)
    chosen: dict[int, str] = {}
    run = uuid.uuid4().hex[:6]
    for i in range(60):
        group = f"coord-{run}-{i}"
        node = coordinator_of(admin, group)
        assert node in ids, node
        chosen.setdefault(node, group)
        if set(chosen) == ids:
            break
    assert set(chosen) == ids, f"coordinators seen: {chosen}"

    for node, group in sorted(chosen.items()):
        bootstrap = cluster.node(node % len(ids) + 1).bootstrap  # not the coordinator itself
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe([topic_name])
        seen = 0
        deadline = time.monotonic() + 90
        try:
            while seen < 300 and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    seen += 1
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        assert seen == 300, (group, seen)
        for n in cluster.nodes:
            node_admin = admin_for(n.bootstrap)
            committed = node_admin.list_consumer_group_offsets(
                [_group_request(group, topic_name)], request_timeout=15)[group].result(timeout=20)
            assert sorted((tp.partition, tp.offset) for tp in committed.topic_partitions) == [(0, 100), (1, 100), (2, 100)]
        assert coordinator_of(admin, group) == node


def _group_request(group, topic):
    from confluent_kafka import ConsumerGroupTopicPartitions

    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])


# ---- replication factor ---------------------------------------------------------------------------------


def test_replication_factor_2(cluster, topic_name):
    # Proves: CreateTopics with replication factor 2 on three brokers. Kafka creates it with 2 replicas on
    # distinct brokers. runnel (until "Cluster II" replicates partition data, issue 13) refuses it with
    # INVALID_REPLICATION_FACTOR and a message saying replication is not built yet, and creates nothing.
    admin = admin_for(cluster.bootstrap)
    future = admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=2)])[topic_name]
    if cluster.target == "kafka":
        future.result(timeout=60)
        md = wait_for_topic(admin, topic_name, 3, timeout_s=60)
        for p, m in md.partitions.items():
            assert len(set(m.replicas)) == 2 and m.leader in m.replicas, (p, m.replicas)
    else:
        with pytest.raises(KafkaException) as raised:
            future.result(timeout=60)
        err = raised.value.args[0]
        assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
        assert "replicat" in err.str().lower(), err.str()
        assert topic_name not in admin.list_topics(timeout=10).topics


# ---- kafka-metadata-quorum ------------------------------------------------------------------------------


def parse_status(out: str) -> dict:
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M))
    return fields


def test_metadata_quorum_describe_status(cluster):
    # Proves: kafka-metadata-quorum describe --status, through a broker and through the controllers, names
    # the cluster id, a leader among exactly the three voters (each with its CONTROLLER endpoint), an epoch
    # >= 1, a high watermark >= 1 and a small follower lag; the leader is the one DescribeQuorum reports.
    expected_id = cluster_id(cluster.bootstrap)
    for how in (("--bootstrap-server", cluster.nodes[0].bootstrap), ("--bootstrap-controller", cluster.controllers)):
        out = run_java_tool(QUORUM, *how, "describe", "--status")
        f = parse_status(out)
        assert f["ClusterId"] == expected_id, out
        voters = json.loads(f["CurrentVoters"])
        assert sorted(v["id"] for v in voters) == [1, 2, 3], out
        for v in voters:
            assert v["endpoints"] == [f"CONTROLLER://{cluster.node(v['id']).controller}"], out
        assert int(f["LeaderId"]) in (1, 2, 3), out
        assert int(f["LeaderEpoch"]) >= 1 and int(f["HighWatermark"]) >= 1, out
        assert 0 <= int(f["MaxFollowerLag"]) <= 1000, out
        assert json.loads(f["CurrentObservers"]) == [], out
        assert int(f["LeaderId"]) == cluster.describe_quorum()["leader_id"], out


def test_metadata_quorum_describe_replication(cluster):
    # Proves: describe --replication lists the three voters once each, exactly one Leader (the status's
    # leader) and two Followers, log end offsets within a small lag of the leader's, lag = leader LEO - LEO.
    for how in (("--bootstrap-server", cluster.nodes[1].bootstrap), ("--bootstrap-controller", cluster.controllers)):
        out = run_java_tool(QUORUM, *how, "describe", "--replication")
        rows = [line.split() for line in out.strip().splitlines()[1:]]
        assert out.splitlines()[0].split() == ["NodeId", "DirectoryId", "LogEndOffset", "Lag", "LastFetchTimestamp",
                                               "LastCaughtUpTimestamp", "Status"], out
        assert sorted(int(r[0]) for r in rows) == [1, 2, 3], out
        statuses = Counter(r[6] for r in rows)
        assert statuses == {"Leader": 1, "Follower": 2}, out
        leader = next(r for r in rows if r[6] == "Leader")
        status = parse_status(run_java_tool(QUORUM, *how, "describe", "--status"))
        assert int(leader[0]) == int(status["LeaderId"]), out
        leader_leo = int(leader[2])
        assert leader_leo >= 1
        for r in rows:
            leo, lag = int(r[2]), int(r[3])
            assert lag == leader_leo - leo and 0 <= lag <= 1000, out


# ---- kafka-reassign-partitions (RF 1) -------------------------------------------------------------------


def test_reassign_rf1_partition_to_another_broker(cluster, topic_name, tmp_path):
    # Proves: kafka-reassign-partitions --generate proposes the partition on the broker asked for, --execute
    # moves the RF-1 partition there, --verify reports it complete, Metadata then names the new broker as
    # leader and only replica, and every record written before the move reads back from it.
    create_rf1(cluster, topic_name, 1)
    source = leaders(cluster, topic_name)[0]
    dest = next(n.node_id for n in cluster.nodes if n.node_id != source)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    values = [f"before-move-{i}".encode() for i in range(500)]
    for v in values:
        producer.produce(topic_name, value=v, partition=0)
    assert producer.flush(60) == 0

    bootstrap = cluster.nodes[0].bootstrap
    topics_json = tmp_path / "topics.json"
    topics_json.write_text(json.dumps({"version": 1, "topics": [{"topic": topic_name}]}))
    out = run_java_tool(REASSIGN, "--bootstrap-server", bootstrap, "--generate",
                        "--topics-to-move-json-file", str(topics_json), "--broker-list", str(dest))
    current = json.loads(out.split("Current partition replica assignment", 1)[1].strip().splitlines()[0])
    proposed = json.loads(out.split("Proposed partition reassignment configuration", 1)[1].strip().splitlines()[0])
    assert [(p["partition"], p["replicas"]) for p in current["partitions"]] == [(0, [source])], out
    assert [(p["topic"], p["partition"], p["replicas"]) for p in proposed["partitions"]] == [(topic_name, 0, [dest])], out

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(proposed))
    out = run_java_tool(REASSIGN, "--bootstrap-server", bootstrap, "--execute", "--reassignment-json-file", str(plan))
    assert "Successfully started partition reassignment" in out, out

    def verified():
        text = run_java_tool(REASSIGN, "--bootstrap-server", bootstrap, "--verify", "--reassignment-json-file", str(plan))
        return text if f"Reassignment of partition {topic_name}-0 is completed" in text else None

    wait_for(verified, timeout_s=120, interval_s=1.0, what="--verify reports the move complete")
    wait_for(lambda: leaders(cluster, topic_name) == {0: dest}, timeout_s=60, what=f"leader {dest}")
    md = admin_for(cluster.bootstrap).list_topics(topic=topic_name, timeout=10).topics[topic_name].partitions[0]
    assert list(md.replicas) == [dest] and list(md.isrs) == [dest], (md.replicas, md.isrs)

    consumer = Consumer({"bootstrap.servers": cluster.node(dest).bootstrap, "group.id": f"r-{topic_name}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    got = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(msg.error())
            got.append(msg.value())
    finally:
        consumer.close()
    assert got == values
    # Writes after the move land on the new leader.
    producer.produce(topic_name, value=b"after-move", partition=0)
    assert producer.flush(30) == 0
