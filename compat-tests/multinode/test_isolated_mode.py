"""Kafka's isolated mode on five nodes: three controller-only nodes and two broker-only nodes.

Nodes 1-3 run `process.roles=controller`: only a CONTROLLER listener, the static voter set
(`controller.quorum.voters`), no clients, never registered as brokers. Nodes 4 and 5 run `process.roles=broker`:
only a PLAINTEXT listener, not voters; they replicate the metadata log as observers, register, and hold every
partition. The tests look at that shape through Kafka's own CLI tools (kafka-metadata-quorum, kafka-cluster,
kafka-topics), librdkafka (confluent-kafka) and the wire, against Apache Kafka 4.4 first and runnel second.

All tests share one cluster (conftest `isolated_cluster`, harness/cluster.py `roles="isolated"`): five JVMs
start slowly on Kafka. The last three tests kill nodes with kill -9 (a broker; two controllers; the active
controller) and restart them before they end, pass or fail.

Runs only in 3-node mode (`compat-tests/run.sh --nodes 3`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster import describe_quorum
from config_wire import _compact_str, _Reader, _recv, _uvarint
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import create_topic, java_tool_argv, read_partitions, wait_for

pytestmark = pytest.mark.nodes3

QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
CLUSTER_TOOL = "org.apache.kafka.tools.ClusterTool"
TOPICS = "org.apache.kafka.tools.TopicCommand"
CLI_TIMEOUT_S = 120.0
RECORDS = 60
# Kafka's text form of the zero UUID: describe --replication's DirectoryId of a static voter (a
# `controller.quorum.voters` entry carries no directory id).
ZERO_DIRECTORY_ID = "AAAAAAAAAAAAAAAAAAAAAA"
# APIs only a broker serves to clients; a controller's ApiVersions (Kafka 4.4) lists none of them.
CLIENT_APIS = {0: "Produce", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
               10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
               22: "InitProducerId"}
API_VERSIONS_KEY = 18
METADATA_KEY = 3
DESCRIBE_QUORUM_KEY = 55


# ---- the CLI ----------------------------------------------------------------------------------------------


def tool(main_class: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(java_tool_argv(main_class, *args), capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{' '.join(done.args[-6:])} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def how(cluster, via: str) -> list[str]:
    """Where a tool asks: every controller (`--bootstrap-controller`) or broker 4 (`--bootstrap-server`)."""
    if via == "controllers":
        return ["--bootstrap-controller", cluster.controllers]
    return ["--bootstrap-server", cluster.brokers[0].bootstrap]


def parse_status(out: str) -> dict:
    """describe --status as {field: value}, CurrentVoters / CurrentObservers parsed from their JSON."""
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M))
    for key in ("CurrentVoters", "CurrentObservers"):
        fields[key] = json.loads(fields[key])
    fields["text"] = out
    return fields


def status(cluster, via: str) -> dict:
    return parse_status(ok(tool(QUORUM, *how(cluster, via), "describe", "--status")))


def replication(out: str) -> dict[int, dict]:
    """describe --replication as {node id: {"dir", "leo", "lag", "status"}}."""
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NodeId", "DirectoryId", "LogEndOffset", "Lag", "LastFetchTimestamp",
                                "LastCaughtUpTimestamp", "Status"], out
    rows = {}
    for line in lines[1:]:
        r = line.split()
        rows[int(r[0])] = {"dir": r[1], "leo": int(r[2]), "lag": int(r[3]), "status": r[6]}
    return rows


def table(out: str) -> tuple[list[str], list[list[str]]]:
    """A whitespace-aligned table (kafka-cluster list-endpoints): its header and rows."""
    lines = [line.split() for line in out.strip().splitlines()]
    return lines[0], lines[1:]


# ---- the wire and the processes ---------------------------------------------------------------------------


def _request(addr: str, api_key: int, version: int, body: bytes, flexible: bool, timeout_s: float = 10.0):
    """One request on a fresh connection; the response body's reader, or None if the node closed the
    connection without an answer. ApiVersions answers with header v0 (no tags) even when flexible."""
    client_id = b"isolated-compat"
    header = struct.pack(">hhih", api_key, version, 11, len(client_id)) + client_id
    if flexible:
        header += _uvarint(0)
    frame = header + body
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            size = struct.unpack(">i", _recv(sock, 4))[0]
        except ConnectionError:
            return None
        r = _Reader(_recv(sock, size))
    assert r.i32() == 11, "correlation id mismatch"
    return r


def api_keys(addr: str) -> set[int]:
    """The API keys an ApiVersions v3 request lists on `addr`."""
    r = _request(addr, API_VERSIONS_KEY, 3, _compact_str("isolated-compat") + _compact_str("1.0") + _uvarint(0),
                 flexible=True)
    assert r is not None, f"{addr} closed the connection on ApiVersions"
    assert r.i16() == 0, f"ApiVersions error on {addr}"

    def key():
        k = r.i16()
        r.take(4)  # min and max version
        r.tags()
        return k

    return set(r.array(key))


def metadata_answered(addr: str) -> bool:
    """Whether a Metadata v1 request (all topics) gets any answer on `addr`."""
    return _request(addr, METADATA_KEY, 1, struct.pack(">i", -1), flexible=False) is not None


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its sockets in LISTEN state, from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table_name in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table_name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = TCP_LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


# ---- clients ----------------------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """RECORDS records through `bootstrap` alone (acks=all), spread over every partition; {partition: values}."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    sent: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for i in range(RECORDS):
        value = f"{topic}-{i}".encode()
        producer.produce(topic, value=value, partition=i % partitions)
        sent[i % partitions].append(value)
    assert producer.flush(60) == 0, f"records to {topic} through {bootstrap} not acknowledged"
    return sent


def produce_and_consume(cluster, topic: str, partitions: int) -> None:
    """Produce RECORDS records through broker 4 alone (acks=all, spread over every partition), read them back
    with a group consumer bootstrapped from broker 5 alone: each record exactly once, in order per partition."""
    first, second = cluster.brokers
    sent = produce(first.bootstrap, topic, partitions)
    consumer = Consumer({"bootstrap.servers": second.bootstrap, "group.id": f"{topic}-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    errors = []
    consumer.subscribe([topic])
    deadline = time.monotonic() + 90
    try:
        while sum(map(len, got.values())) < RECORDS and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                errors.append(str(msg.error()))
                continue
            got[msg.partition()].append(msg.value())
    finally:
        consumer.close()
    assert got == sent, (f"read through broker {second.node_id}: {sum(map(len, got.values()))} of {RECORDS} "
                         f"records, errors {errors[:5]}")


# ---- tests ------------------------------------------------------------------------------------------------


def test_controller_only_nodes_serve_no_clients(isolated_cluster):
    """A controller-only node listens on its CONTROLLER port alone (runnel: plus its admin HTTP listener), and
    its ApiVersions lists none of the client APIs (Produce, Metadata, FindCoordinator, JoinGroup, ...); a
    Metadata request there gets no answer (the node closes the connection). A broker-only node listens on its
    client port alone (no CONTROLLER listener) and serves all of them."""
    cluster = isolated_cluster

    def extra(n) -> set[int]:
        return {n.admin_port} if cluster.target == "runnel" else set()

    for n in cluster.controller_nodes:
        assert n.port is None
        assert listening_ports(n.pid) == {n.controller_port} | extra(n), f"controller-only node {n.node_id}"
        listed = api_keys(n.controller)
        assert {API_VERSIONS_KEY, DESCRIBE_QUORUM_KEY} <= listed, f"node {n.node_id} lists {sorted(listed)}"
        served = {name for key, name in CLIENT_APIS.items() if key in listed}
        assert not served, f"controller-only node {n.node_id} lists client APIs {sorted(served)}"
        assert not metadata_answered(n.controller), f"controller-only node {n.node_id} answered Metadata"
    for n in cluster.brokers:
        assert n.controller_port is None
        assert listening_ports(n.pid) == {n.port} | extra(n), f"broker-only node {n.node_id}"
        listed = api_keys(n.bootstrap)
        missing = {name for key, name in CLIENT_APIS.items() if key not in listed}
        assert not missing, f"broker-only node {n.node_id} does not list {sorted(missing)}"
        assert metadata_answered(n.bootstrap), f"broker-only node {n.node_id} did not answer Metadata"


def test_metadata_and_describe_cluster_list_only_the_brokers(isolated_cluster):
    """Metadata and DescribeCluster through either broker list brokers 4 and 5 only, each at the address it
    advertises (the controller-only nodes never register); the controller id they name is one of those two
    brokers; both brokers name the same cluster id, the one describe --status reports."""
    cluster = isolated_cluster
    expected = {n.node_id: ("127.0.0.1", n.port) for n in cluster.brokers}
    cluster_ids = set()
    for n in cluster.brokers:
        admin = AdminClient({"bootstrap.servers": n.bootstrap})
        md = admin.list_topics(timeout=10)
        assert {b: (m.host, m.port) for b, m in md.brokers.items()} == expected, f"Metadata through node {n.node_id}"
        assert md.controller_id in expected, f"Metadata through node {n.node_id} names controller {md.controller_id}"
        described = admin.describe_cluster(request_timeout=10).result(timeout=15)
        assert {x.id: (x.host, x.port) for x in described.nodes} == expected, f"DescribeCluster through {n.node_id}"
        assert described.controller is not None and described.controller.id in expected, described.controller
        cluster_ids |= {md.cluster_id, described.cluster_id}
    assert len(cluster_ids) == 1, cluster_ids
    assert status(cluster, "controllers")["ClusterId"] == cluster_ids.pop()


@pytest.mark.parametrize("via", ["controllers", "broker"])
def test_describe_status_lists_controllers_as_voters_brokers_as_observers(isolated_cluster, via):
    """kafka-metadata-quorum describe --status, asked at the controllers (`--bootstrap-controller`) or through
    broker 4 (`--bootstrap-server`): the voters are exactly nodes 1-3, each with its CONTROLLER endpoint and no
    directory id (a static voter set has none); the observers are exactly brokers 4 and 5, each with the
    directory id of its meta.properties; the leader is a voter, the one DescribeQuorum names on the wire."""
    cluster = isolated_cluster
    st = status(cluster, via)
    assert sorted(st["CurrentVoters"], key=lambda v: v["id"]) == [
        {"id": n.node_id, "endpoints": [f"CONTROLLER://{n.controller}"]} for n in cluster.controller_nodes
    ], st["text"]
    assert sorted(st["CurrentObservers"], key=lambda o: o["id"]) == [
        {"id": n.node_id, "directoryId": n.directory_id()} for n in cluster.brokers
    ], st["text"]
    leader = int(st["LeaderId"])
    assert leader in {n.node_id for n in cluster.controller_nodes}, st["text"]
    assert int(st["LeaderEpoch"]) >= 1 and int(st["HighWatermark"]) >= 1, st["text"]
    assert describe_quorum(cluster.node(leader).controller)["leader_id"] == leader


@pytest.mark.parametrize("via", ["broker", "controllers"])
def test_describe_replication_shows_three_voters_and_two_observers(isolated_cluster, via):
    """describe --replication (through broker 4, or at the controllers) has one row per node: nodes 1-3 as one
    Leader (the status's leader) and two Followers with the zero directory id of a static voter, brokers 4 and
    5 as Observers with their own directory ids; every lag is the leader's log end offset minus the row's."""
    cluster = isolated_cluster
    out = ok(tool(QUORUM, *how(cluster, via), "describe", "--replication"))
    rows = replication(out)
    assert sorted(rows) == [n.node_id for n in cluster.nodes], out
    voters = {i: r for i, r in rows.items() if cluster.node(i).is_controller}
    assert Counter(r["status"] for r in voters.values()) == {"Leader": 1, "Follower": 2}, out
    assert all(r["dir"] == ZERO_DIRECTORY_ID for r in voters.values()), out
    for n in cluster.brokers:
        assert (rows[n.node_id]["status"], rows[n.node_id]["dir"]) == ("Observer", n.directory_id()), out
    leader = next(i for i, r in voters.items() if r["status"] == "Leader")
    assert leader == int(status(cluster, via)["LeaderId"]), out
    leader_leo = rows[leader]["leo"]
    assert leader_leo >= 1, out
    for r in rows.values():
        assert r["lag"] == leader_leo - r["leo"] and 0 <= r["lag"] <= 1000, out


def test_list_endpoints_controllers_and_brokers_apart(isolated_cluster):
    """kafka-cluster list-endpoints at the controllers lists nodes 1-3, each its CONTROLLER endpoint, type
    controller; through a broker it lists brokers 4 and 5 only, each its client endpoint, unfenced, type
    broker."""
    cluster = isolated_cluster
    header, rows = table(ok(tool(CLUSTER_TOOL, "list-endpoints", *how(cluster, "controllers"))))
    assert header == ["ID", "HOST", "PORT", "RACK", "ENDPOINT_TYPE"], (header, rows)
    assert sorted(rows, key=lambda r: int(r[0])) == [
        [str(n.node_id), "127.0.0.1", str(n.controller_port), "null", "controller"] for n in cluster.controller_nodes
    ], rows
    header, rows = table(ok(tool(CLUSTER_TOOL, "list-endpoints", "--bootstrap-server", cluster.bootstrap)))
    assert header == ["ID", "HOST", "PORT", "RACK", "STATE", "ENDPOINT_TYPE"], (header, rows)
    assert sorted(rows, key=lambda r: int(r[0])) == [
        [str(n.node_id), "127.0.0.1", str(n.port), "null", "unfenced", "broker"] for n in cluster.brokers
    ], rows


def test_topic_partitions_live_on_the_brokers_only(isolated_cluster, topic_name):
    """kafka-topics --create --partitions 6 through broker 5 places every partition on broker 4 or 5 (replicas =
    ISR = [leader]), striped: each run of two consecutive partitions (0-1, 2-3, 4-5) uses both brokers;
    --describe through broker 4 and Metadata agree."""
    cluster = isolated_cluster
    brokers = {n.node_id for n in cluster.brokers}
    out = ok(tool(TOPICS, "--bootstrap-server", cluster.brokers[1].bootstrap, "--create", "--topic", topic_name,
                  "--partitions", "6", "--replication-factor", "1"))
    assert out.strip() == f"Created topic {topic_name}.", out

    def described():
        text = ok(tool(TOPICS, "--bootstrap-server", cluster.brokers[0].bootstrap, "--describe", "--topic", topic_name))
        rows = re.findall(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]*)\s+Isr: ([\d,]*)", text)
        return (text, rows) if len(rows) == 6 and all(int(r[1]) >= 0 for r in rows) else None

    text, rows = wait_for(described, timeout_s=60, interval_s=1.0, what=f"{topic_name} with 6 led partitions")
    layout = {int(p): (int(leader), replicas, isr) for p, leader, replicas, isr in rows}
    for p, (leader, replicas, isr) in layout.items():
        assert leader in brokers and replicas == isr == str(leader), text
    for first in range(0, 6, 2):
        assert {layout[first][0], layout[first + 1][0]} == brokers, text
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic=topic_name, timeout=10)
    assert {p: m.leader for p, m in md.topics[topic_name].partitions.items()} == {
        p: v[0] for p, v in layout.items()}, text


def test_produce_and_consume_through_the_brokers(isolated_cluster, topic_name):
    """Records produced through broker 4 (to partitions led by 4 and 5) are read back by a group consumer
    bootstrapped from broker 5; the group's coordinator and every partition of __consumer_offsets live on the
    brokers."""
    cluster = isolated_cluster
    brokers = {n.node_id for n in cluster.brokers}
    create_topic(cluster.bootstrap, topic_name, 4, timeout_s=60)
    produce_and_consume(cluster, topic_name, 4)
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)
    offsets = md.topics.get("__consumer_offsets")
    assert offsets is not None and offsets.partitions, sorted(md.topics)
    assert {m.leader for m in offsets.partitions.values()} <= brokers, {
        p: m.leader for p, m in offsets.partitions.items()}


def brokers_in_metadata(node) -> set[int]:
    return set(AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 2}).list_topics(timeout=10).brokers)


def restart_dead(cluster) -> None:
    """Start every node a test killed (all at once: a quorum needs a majority) and wait until each serves."""
    if any(not n.alive() for n in cluster.nodes):
        cluster.restart_all()


def led_partitions(node, topic: str) -> dict[int, int] | None:
    """{partition: leader} through `node`'s Metadata once every partition of `topic` has a leader, else None."""
    md = AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 2}).list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions or any(m.leader < 0 for m in t.partitions.values()):
        return None
    return {p: m.leader for p, m in t.partitions.items()}


# The last three tests kill nodes of the shared cluster; each restarts them before it ends.
def test_killed_broker_partitions_go_offline_and_come_back(isolated_cluster, topic_name):
    """kill -9 of broker 4: within 30 s Metadata through broker 5 lists broker 5 alone and list-endpoints
    only broker 5; kafka-topics --describe --unavailable-partitions lists exactly the partitions broker 4 held,
    without a leader, replicas [4], and (Kafka 4.4's eligible leader replicas, checked at the end) an empty
    ISR with 4 in the ELR and last known ELR. Restarted on its data dir, broker 4 registers again, leads its
    partitions (ISR [4], ELR empty) and serves every record acknowledged before the crash."""
    cluster = isolated_cluster
    victim, survivor = cluster.brokers
    create_topic(cluster.bootstrap, topic_name, 4, timeout_s=60)
    layout = wait_for(lambda: led_partitions(survivor, topic_name), timeout_s=30, what=f"{topic_name} led")
    held = sorted(p for p, leader in layout.items() if leader == victim.node_id)
    assert held and set(layout.values()) == {victim.node_id, survivor.node_id}, layout
    sent = produce(cluster.bootstrap, topic_name, 4)
    try:
        victim.kill9()
        wait_for(lambda: brokers_in_metadata(survivor) == {survivor.node_id}, timeout_s=30,
                 what=f"Metadata through broker {survivor.node_id} without broker {victim.node_id}")
        header, rows = table(ok(tool(CLUSTER_TOOL, "list-endpoints", "--bootstrap-server", survivor.bootstrap)))
        assert [r[0] for r in rows] == [str(survivor.node_id)], rows
        text = ok(tool(TOPICS, "--bootstrap-server", survivor.bootstrap, "--describe", "--unavailable-partitions"))
        rows = re.findall(rf"Topic: {re.escape(topic_name)}\s+Partition: (\d+)\s+Leader: (\S+)\s+Replicas: ([\d,]*)\s+"
                          r"Isr: ([\d,]*)\s+Elr: ([\d,]*)\s+LastKnownElr: ([\d,]*)", text)
        v = str(victim.node_id)
        offline = sorted(rows, key=lambda r: int(r[0]))
        assert [r[:3] for r in offline] == [(str(p), "none", v) for p in held], text
        offline_text = text
    finally:
        restart_dead(cluster)
    wait_for(lambda: brokers_in_metadata(survivor) == {n.node_id for n in cluster.brokers}, timeout_s=60,
             what=f"broker {victim.node_id} registered again")
    assert wait_for(lambda: led_partitions(survivor, topic_name), timeout_s=60, what=f"{topic_name} led") == layout
    text = ok(tool(TOPICS, "--bootstrap-server", survivor.bootstrap, "--describe", "--topic", topic_name))
    rows = re.findall(r"Partition: (\d+)\s+Leader: (\S+)\s+Replicas: ([\d,]*)\s+Isr: ([\d,]*)\s+Elr: ([\d,]*)\s+"
                      r"LastKnownElr: ([\d,]*)", text)
    assert sorted(rows) == sorted((str(p), str(b), str(b), str(b), "", "") for p, b in layout.items()), text
    got = read_partitions(survivor.bootstrap, topic_name, range(4), timeout_s=60)
    assert {p: [m.value() for m in msgs] for p, msgs in got.items()} == sent
    # Checked last, so a difference here does not hide the recovery above: while broker 4 was fenced, the ISR
    # of each partition it alone held was empty and broker 4 its eligible leader replica.
    assert [r[3:] for r in offline] == [("", v, v)] * len(held), (
        f"ISR, ELR, LastKnownElr of broker {v}'s partitions while it was fenced:\n{offline_text}")


def test_brokers_serve_existing_partitions_without_a_controller_majority(isolated_cluster, topic_name):
    """With two of the three controllers killed (no quorum), the brokers still serve the partitions they hold:
    records produced with acks=all through broker 4 are read back through broker 5, and Metadata still lists
    both brokers; a CreateTopics through a broker does not succeed (within its 8 s timeout). Once the two
    controllers are restarted, a topic created through a broker takes records."""
    cluster = isolated_cluster
    create_topic(cluster.bootstrap, topic_name, 4, timeout_s=60)
    wait_for(lambda: all(led_partitions(n, topic_name) for n in cluster.brokers), timeout_s=30,
             what=f"{topic_name} led in both brokers' Metadata")
    victims = cluster.controller_nodes[1:]
    try:
        for n in victims:
            n.kill9()
        produce_and_consume(cluster, topic_name, 4)
        for n in cluster.brokers:
            assert brokers_in_metadata(n) == {b.node_id for b in cluster.brokers}, f"Metadata through {n.node_id}"
        blocked = f"{topic_name}-no-quorum"
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap, "log_level": 2})
        future = admin.create_topics([NewTopic(blocked, num_partitions=2, replication_factor=1)],
                                     request_timeout=8, operation_timeout=8)[blocked]
        with pytest.raises(KafkaException):
            future.result(timeout=30)
    finally:
        restart_dead(cluster)
    created = f"{topic_name}-after"
    create_topic(cluster.brokers[1].bootstrap, created, 2, timeout_s=60)
    produce_and_consume(cluster, created, 2)


def test_brokers_serve_after_kill9_of_the_active_controller(isolated_cluster, topic_name, tmp_path):
    """kill -9 of the active controller (the leader describe --status names): the two surviving controllers
    elect one of themselves at a higher epoch (describe --status at their CONTROLLER listeners), Metadata
    through each broker lists brokers 4 and 5 (within 30 s), and a topic created through a broker then takes
    records and serves them. Restarted on its data dir, the killed controller rejoins as a Follower that
    catches up."""
    cluster = isolated_cluster
    before = status(cluster, "controllers")
    victim = cluster.node(int(before["LeaderId"]))
    assert victim.is_controller, before["text"]
    old_epoch = int(before["LeaderEpoch"])
    survivors = [n for n in cluster.controller_nodes if n is not victim]
    # Short admin timeouts, so an ask while no leader is elected fails fast and is asked again.
    quick = tmp_path / "quick-admin.properties"
    quick.write_text("request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n")
    last = {}

    def new_leader():
        done = tool(QUORUM, "--bootstrap-controller", ",".join(n.controller for n in survivors),
                    "--command-config", str(quick), "describe", "--status")
        last["out"] = done.stdout + done.stderr
        if done.returncode != 0:
            return None
        st = parse_status(done.stdout)
        if int(st["LeaderId"]) in {n.node_id for n in survivors} and int(st["LeaderEpoch"]) > old_epoch:
            return st
        return None

    def caught_up():
        done = tool(QUORUM, "--bootstrap-controller", cluster.controllers, "--command-config", str(quick),
                    "describe", "--replication")
        last["out"] = done.stdout + done.stderr
        if done.returncode != 0:
            return None
        row = replication(done.stdout).get(victim.node_id)
        return row if row is not None and row["status"] == "Follower" and row["lag"] == 0 else None

    try:
        victim.kill9()
        try:
            st = wait_for(new_leader, timeout_s=90, interval_s=0.5, what="a leader among the surviving controllers")
        except AssertionError:
            raise AssertionError(f"no new leader among nodes {[n.node_id for n in survivors]} after kill -9 of "
                                 f"node {victim.node_id}; last describe --status:\n{last.get('out')}") from None
        assert sorted(v["id"] for v in st["CurrentVoters"]) == [n.node_id for n in cluster.controller_nodes], st["text"]

        brokers = {n.node_id for n in cluster.brokers}
        for n in cluster.brokers:
            wait_for(lambda: brokers_in_metadata(n) == brokers, timeout_s=30,
                     what=f"Metadata through node {n.node_id} listing brokers {sorted(brokers)} under the new leader")
        create_topic(cluster.brokers[0].bootstrap, topic_name, 4, timeout_s=60)
        produce_and_consume(cluster, topic_name, 4)
    finally:
        restart_dead(cluster)

    try:
        wait_for(caught_up, timeout_s=90, interval_s=0.5, what=f"node {victim.node_id} a caught-up Follower")
    except AssertionError:
        raise AssertionError(f"restarted node {victim.node_id} never listed as a Follower with lag 0; last "
                             f"describe --replication:\n{last.get('out')}") from None
