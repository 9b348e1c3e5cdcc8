"""KIP-853 dynamic quorum membership through Kafka's own `kafka-metadata-quorum` CLI, on three nodes.

Each test starts a cluster of its own in dynamic mode (conftest `dynamic_cluster`, harness/cluster.py
`quorum="dynamic"`): node 1 is the quorum's only voter (Kafka: `kafka-storage format --standalone`), nodes 2
and 3 start with the same `controller.quorum.bootstrap.servers` and replicate as observers. The tests grow the
quorum with `add-controller`, shrink it with `remove-controller`, and check what `describe` reports and that
the quorum still commits metadata (topics created through any node take records). The last test checks
that the run's shared static cluster (`cluster`) refuses both commands.

Runs only in 3-node mode (`compat-tests/run.sh --nodes 3`).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from helpers import create_topic, java_tool_argv, read_partitions, wait_for

pytestmark = pytest.mark.nodes3

QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
CLI_TIMEOUT_S = 120.0
# A directory id no node has (Kafka's text form of a UUID: 22 characters of URL-safe base64).
UNKNOWN_DIRECTORY_ID = "AAAAAAAAAAAAAAAAAAAAAQ"
RECORDS = 30


# ---- the CLI ----------------------------------------------------------------------------------------------


def quorum_tool(cluster, *args: str, command_config=None, controllers: str | None = None,
                broker: str | None = None) -> subprocess.CompletedProcess:
    """kafka-metadata-quorum against the first node's CONTROLLER listener (the quorum's bootstrap server),
    or against `controllers`, or through a `broker` listener (`--bootstrap-server`)."""
    argv = ["--bootstrap-server", broker] if broker else ["--bootstrap-controller", controllers or cluster.quorum_bootstrap]
    if command_config is not None:
        argv += ["--command-config", str(command_config)]
    return subprocess.run(java_tool_argv(QUORUM, *argv, *args), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args[-4:]} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def refused(done: subprocess.CompletedProcess, exception: str) -> str:
    """The tool failed with `exception` (the client's exception for the error code the quorum answered)."""
    assert done.returncode == 1, f"expected exit 1 with {exception}, got {done.returncode}\n{done.stdout}\n{done.stderr}"
    # The tool prints the failure's message first: the client exception's class, then the quorum's message.
    found = re.search(rf"^org\.apache\.kafka\.common\.errors\.{exception}\b.*$", done.stderr, re.M)
    assert found, f"expected {exception}:\n{done.stderr}"
    return found.group(0)


def status(cluster, **how) -> dict:
    """describe --status as {field: value}, CurrentVoters / CurrentObservers parsed from their JSON."""
    out = ok(quorum_tool(cluster, "describe", "--status", **how))
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M))
    for key in ("CurrentVoters", "CurrentObservers"):
        fields[key] = json.loads(fields[key])
    fields["text"] = out
    return fields


def replication(cluster) -> dict[int, tuple[str, str, int]]:
    """describe --replication as {node id: (directory id, status, lag)}."""
    out = ok(quorum_tool(cluster, "describe", "--replication"))
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NodeId", "DirectoryId", "LogEndOffset", "Lag", "LastFetchTimestamp",
                                "LastCaughtUpTimestamp", "Status"], out
    return {int(r[0]): (r[1], r[6], int(r[3])) for r in (line.split() for line in lines[1:])}


def voter_entry(node) -> dict:
    """How describe --status lists `node` as a voter: id, the directory id of its meta.properties, its
    CONTROLLER endpoint."""
    return {"id": node.node_id, "directoryId": node.directory_id(), "endpoints": [f"CONTROLLER://{node.controller}"]}


def voters(st: dict) -> list[dict]:
    return sorted(st["CurrentVoters"], key=lambda v: v["id"])


# ---- steps ------------------------------------------------------------------------------------------------


def wait_caught_up_observer(cluster, node) -> None:
    """Until describe --replication lists `node` as an Observer with no lag: a leader only promotes an
    observer that has caught up (as an operator checks before add-controller)."""
    last = {}

    def caught_up():
        last["rows"] = rows = replication(cluster)
        row = rows.get(node.node_id)
        return row is not None and row[1] == "Observer" and row[2] == 0

    try:
        wait_for(caught_up, timeout_s=60, interval_s=0.5, what=f"node {node.node_id} as a caught-up observer")
    except AssertionError:
        raise AssertionError(f"node {node.node_id} never listed as an Observer with lag 0; last describe "
                             f"--replication: {last.get('rows')}") from None


def add_controller(cluster, node) -> None:
    wait_caught_up_observer(cluster, node)
    out = ok(quorum_tool(cluster, "add-controller", command_config=node.command_config()))
    assert out.strip() == (f"Added controller {node.node_id} with directory id {node.directory_id()} "
                           f"and endpoints: CONTROLLER://{node.controller}"), out


def grow_to_three_voters(cluster) -> dict:
    for node in cluster.nodes[1:]:
        add_controller(cluster, node)
    st = status(cluster)
    assert voters(st) == [voter_entry(n) for n in cluster.nodes], st["text"]
    return st


def wait_for_status(cluster, predicate, what: str) -> dict:
    last = {}

    def check():
        last["status"] = status(cluster)
        return last["status"] if predicate(last["status"]) else None

    try:
        return wait_for(check, timeout_s=30, interval_s=0.5, what=what)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}; last describe --status:\n"
                             f"{last.get('status', {}).get('text')}") from None


def topic_takes_records_through(cluster, node, topic: str) -> None:
    """Create `topic` (3 partitions, RF 1) through `node` alone, produce through it, read every record back
    through the next node: the quorum commits the topic and every broker learns it."""
    create_topic(node.bootstrap, topic, 3, timeout_s=60)
    producer = Producer({"bootstrap.servers": node.bootstrap, "acks": "all"})
    sent = [f"{topic}-{i}".encode() for i in range(RECORDS)]
    for i, value in enumerate(sent):
        producer.produce(topic, value=value, partition=i % 3)
    assert producer.flush(60) == 0, f"records to {topic} not acknowledged"
    reader = cluster.nodes[node.node_id % len(cluster.nodes)]
    got = read_partitions(reader.bootstrap, topic, range(3), timeout_s=60)
    assert sorted(m.value() for msgs in got.values() for m in msgs) == sorted(sent), f"read through node {reader.node_id}"


# ---- tests ------------------------------------------------------------------------------------------------


def test_add_controller_grows_a_standalone_quorum_to_three_voters(dynamic_cluster, topic_name):
    """add-controller, given each observer's own properties file, makes nodes 2 and 3 voters: describe
    --status then lists all three (id, the directory id of each node's meta.properties, its CONTROLLER
    endpoint) and no observer, the same through a broker listener (`--bootstrap-server`), describe
    --replication one Leader and two Followers; topics created afterwards
    through each node take records. Before that the quorum is node 1 alone, nodes 2 and 3 its observers."""
    cluster = dynamic_cluster
    first = cluster.nodes[0]
    st = status(cluster)
    assert voters(st) == [voter_entry(first)], st["text"]
    assert int(st["LeaderId"]) == first.node_id, st["text"]
    observers = sorted((o["id"], o.get("directoryId")) for o in st["CurrentObservers"])
    assert observers == [(n.node_id, n.directory_id()) for n in cluster.nodes[1:]], st["text"]

    st = grow_to_three_voters(cluster)
    assert st["CurrentObservers"] == [], st["text"]
    assert int(st["LeaderId"]) in {n.node_id for n in cluster.nodes}, st["text"]
    through_broker = status(cluster, broker=cluster.nodes[-1].bootstrap)
    assert voters(through_broker) == voters(st) and through_broker["LeaderId"] == st["LeaderId"], through_broker["text"]
    rows = replication(cluster)
    assert {i: r[0] for i, r in rows.items()} == {n.node_id: n.directory_id() for n in cluster.nodes}, rows
    assert sorted(r[1] for r in rows.values()) == ["Follower", "Follower", "Leader"], rows
    assert rows[int(st["LeaderId"])][1] == "Leader", rows

    for node in cluster.nodes:
        topic_takes_records_through(cluster, node, f"{topic_name}-via{node.node_id}")


def test_duplicate_voter_and_last_voter_are_refused(dynamic_cluster):
    """remove-controller of the standalone quorum's only voter is refused with VOTER_NOT_FOUND (a quorum
    keeps one voter); add-controller of a node that already votes (that first node; a node added a moment
    ago) is refused with DUPLICATE_VOTER; the voter set stays as it was."""
    cluster = dynamic_cluster
    first, second = cluster.nodes[0], cluster.nodes[1]
    refused(quorum_tool(cluster, "remove-controller", "--controller-id", str(first.node_id),
                        "--controller-directory-id", first.directory_id()), "VoterNotFoundException")
    assert voters(status(cluster)) == [voter_entry(first)]
    refused(quorum_tool(cluster, "add-controller", command_config=first.command_config()), "DuplicateVoterException")
    assert voters(status(cluster)) == [voter_entry(first)]

    add_controller(cluster, second)
    refused(quorum_tool(cluster, "add-controller", command_config=second.command_config()), "DuplicateVoterException")
    assert voters(status(cluster)) == [voter_entry(first), voter_entry(second)]


def test_remove_controller_shrinks_the_quorum(dynamic_cluster, topic_name):
    """remove-controller with a voter's id and directory id (here a follower) takes it out of the voter set:
    describe --status no longer lists it as a voter but as an observer (it still replicates), and the two
    remaining voters still commit (a new topic takes records). Removing an id with a directory id it does not
    have, an id that is no voter, or the removed voter again is refused with VOTER_NOT_FOUND."""
    cluster = dynamic_cluster
    st = grow_to_three_voters(cluster)
    leader = int(st["LeaderId"])
    victim = next(n for n in reversed(cluster.nodes) if n.node_id != leader)
    kept = [n for n in cluster.nodes if n is not victim]

    for node_id, directory_id in ((victim.node_id, UNKNOWN_DIRECTORY_ID), (7, victim.directory_id())):
        refused(quorum_tool(cluster, "remove-controller", "--controller-id", str(node_id),
                            "--controller-directory-id", directory_id), "VoterNotFoundException")
    assert voters(status(cluster)) == [voter_entry(n) for n in cluster.nodes]

    out = ok(quorum_tool(cluster, "remove-controller", "--controller-id", str(victim.node_id),
                         "--controller-directory-id", victim.directory_id()))
    assert out.strip() == f"Removed KRaft controller {victim.node_id} with directory id {victim.directory_id()}", out
    st = status(cluster)
    assert voters(st) == [voter_entry(n) for n in kept], st["text"]
    wait_for_status(
        cluster,
        lambda s: [(o["id"], o.get("directoryId")) for o in s["CurrentObservers"]]
        == [(victim.node_id, victim.directory_id())],
        what=f"node {victim.node_id} listed as an observer after its removal",
    )

    topic_takes_records_through(cluster, kept[0], f"{topic_name}-after-remove")
    assert AdminClient({"bootstrap.servers": victim.bootstrap}).list_topics(timeout=10).brokers.keys() == {
        n.node_id for n in cluster.nodes}, "the removed controller's broker side still serves Metadata"

    refused(quorum_tool(cluster, "remove-controller", "--controller-id", str(victim.node_id),
                        "--controller-directory-id", victim.directory_id()), "VoterNotFoundException")
    assert voters(status(cluster)) == [voter_entry(n) for n in kept]


def test_describe_quorum_v0_lists_voter_and_observers(dynamic_cluster):
    """DescribeQuorum v0 (the version Kafka 3.x tools send; no directory ids in it) answers on the leader's
    CONTROLLER listener for a dynamic quorum too: node 1 leads and is the only voter, nodes 2 and 3 are listed
    as observers."""
    cluster = dynamic_cluster
    q = cluster.describe_quorum()
    assert q["leader_id"] == cluster.nodes[0].node_id and q["leader_epoch"] >= 1, q
    assert [rid for rid, _ in q["voters"]] == [cluster.nodes[0].node_id], q
    assert sorted(rid for rid, _ in q["observers"]) == [n.node_id for n in cluster.nodes[1:]], q


def test_grown_quorum_elects_a_new_leader_without_its_first_node(dynamic_cluster, topic_name, tmp_path):
    """The voters add-controller made vote: after kill -9 of node 1 (the first voter, the leader, and the
    only `controller.quorum.bootstrap.servers` entry), nodes 2 and 3 elect a leader among themselves at a
    higher epoch, describe --status through their CONTROLLER listeners still lists the three voters, and a
    topic created through node 2 once node 1's broker is fenced takes records."""
    cluster = dynamic_cluster
    first, rest = cluster.nodes[0], cluster.nodes[1:]
    st = grow_to_three_voters(cluster)
    assert int(st["LeaderId"]) == first.node_id, st["text"]
    old_epoch = int(st["LeaderEpoch"])

    first.kill9()
    survivors = ",".join(n.controller for n in rest)
    # Short admin timeouts, so an ask while no leader is elected fails fast and is asked again.
    quick = tmp_path / "quick-admin.properties"
    quick.write_text("request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n")
    last = {}

    def new_leader():
        done = quorum_tool(cluster, "describe", "--status", controllers=survivors, command_config=quick)
        last["out"] = done.stdout + done.stderr
        fields = dict(re.findall(r"^(\w+):\s+(.*)$", done.stdout, re.M))
        if done.returncode != 0 or int(fields.get("LeaderId", -1)) not in {n.node_id for n in rest}:
            return None
        return fields if int(fields["LeaderEpoch"]) > old_epoch else None

    try:
        fields = wait_for(new_leader, timeout_s=90, interval_s=0.5, what="a leader among nodes 2 and 3")
    except AssertionError:
        raise AssertionError(f"no new leader among nodes 2 and 3; last describe --status:\n{last.get('out')}") from None
    assert sorted(v["id"] for v in json.loads(fields["CurrentVoters"])) == [n.node_id for n in cluster.nodes], fields

    admin = AdminClient({"bootstrap.servers": rest[0].bootstrap})
    wait_for(lambda: first.node_id not in admin.list_topics(timeout=10).brokers, timeout_s=60,
             what=f"node {first.node_id}'s broker fenced and gone from Metadata")
    topic_takes_records_through(cluster, rest[0], f"{topic_name}-without-node1")


def test_membership_survives_a_restart_of_every_node(dynamic_cluster, topic_name):
    """Membership changes are durable: after node 2 was added and node 3 added then removed, a stop and
    restart of all three nodes comes back with exactly the voters 1 and 2 (same directory ids and endpoints),
    node 3 an observer again, and a topic created through node 3 takes records."""
    cluster = dynamic_cluster
    first, second, third = cluster.nodes
    grow_to_three_voters(cluster)
    ok(quorum_tool(cluster, "remove-controller", "--controller-id", str(third.node_id),
                   "--controller-directory-id", third.directory_id()))
    assert voters(status(cluster)) == [voter_entry(first), voter_entry(second)]

    cluster.stop()
    cluster.restart_all()
    st = wait_for_status(
        cluster,
        lambda s: [(o["id"], o.get("directoryId")) for o in s["CurrentObservers"]]
        == [(third.node_id, third.directory_id())],
        what=f"node {third.node_id} listed as an observer after the restart",
    )
    assert voters(st) == [voter_entry(first), voter_entry(second)], st["text"]
    assert int(st["LeaderId"]) in (first.node_id, second.node_id), st["text"]
    topic_takes_records_through(cluster, third, f"{topic_name}-after-restart")


# Last in this file: it uses the run's shared static cluster, which pytest otherwise starts before (and keeps
# running beside) the dynamic clusters above.
def test_static_quorum_refuses_add_and_remove_controller(cluster):
    """A static quorum (`controller.quorum.voters`, kraft.version 0) cannot change: add-controller and
    remove-controller are refused with UNSUPPORTED_VERSION and describe --status lists the same three voters."""
    before = status(cluster, controllers=cluster.controllers)
    node = cluster.nodes[-1]
    refused(quorum_tool(cluster, "add-controller", command_config=node.command_config(),
                        controllers=cluster.controllers), "UnsupportedVersionException")
    refused(quorum_tool(cluster, "remove-controller", "--controller-id", str(node.node_id),
                        "--controller-directory-id", node.directory_id(), controllers=cluster.controllers),
            "UnsupportedVersionException")
    after = status(cluster, controllers=cluster.controllers)
    assert sorted(v["id"] for v in after["CurrentVoters"]) == [n.node_id for n in cluster.nodes], after["text"]
    assert voters(after) == voters(before), after["text"]
