"""Kafka's admin CLI tools for log dirs, offsets, leaders and features, and the ApiVersions
handshake of Kafka 4.4's Java clients, against the broker."""

from __future__ import annotations

import re
import socket
import struct
import threading

import pytest

from helpers import run_java_tool

BROKER_API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand"
API_VERSIONS_KEY = 18


class RequestLog:
    """A TCP proxy in front of the broker that records (api key, version) of every request frame
    each client connection sends, without changing a byte."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            requests: list[tuple[int, int]] = []
            with self.lock:
                self.connections.append(requests)
            threading.Thread(target=self._requests, args=(client, server, requests), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    @staticmethod
    def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _requests(self, client: socket.socket, server: socket.socket, requests: list) -> None:
        try:
            while True:
                size = self._read_exactly(client, 4)
                if size is None:
                    break
                frame = self._read_exactly(client, struct.unpack(">i", size)[0])
                if frame is None:
                    break
                requests.append(struct.unpack(">hh", frame[:4]))
                server.sendall(size + frame)
        except OSError:
            pass
        finally:
            server.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.listener.close()


def test_java_4_4_clients_open_with_api_versions_v5_and_no_fallback(broker):
    # Proves: a Kafka 4.4 Java client opens its connection with ApiVersions v5 (KIP-1242) and is
    # served at once: the broker advertises ApiVersions up to v5 and no v4 retry follows.
    proxy = RequestLog(broker.bootstrap)
    try:
        out = run_java_tool(BROKER_API_VERSIONS, "--bootstrap-server", proxy.address)
    finally:
        proxy.close()
    assert "ApiVersions(18): 0 to 5 [usable: 5]" in out, out
    with proxy.lock:
        connections = [list(c) for c in proxy.connections if c]
    assert connections, "the tool sent nothing through the proxy"
    for requests in connections:
        api_versions = [version for key, version in requests if key == API_VERSIONS_KEY]
        assert requests[0] == (API_VERSIONS_KEY, 5), requests
        assert api_versions == [5], requests


GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell"
LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand"
LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"


def produce_with_timestamps(bootstrap: str, topic: str, timestamps: dict[int, list[int]]) -> dict[int, list[int]]:
    """Produce one record per timestamp to each partition, in order; return the acked offsets."""
    from confluent_kafka import Producer

    acked: dict[int, list[int]] = {p: [] for p in timestamps}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.partition()].append(msg.offset())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": True})
    for partition, stamps in timestamps.items():
        for ts in stamps:
            producer.produce(topic, value=f"v{ts}".encode(), partition=partition, timestamp=ts, on_delivery=on_delivery)
            producer.flush(30)
    assert producer.flush(30) == 0
    return acked


def test_get_offsets_by_time_spec(broker, topic_name):
    # Proves: kafka-get-offsets --time -1/-2/-3/<timestamp> answer latest, earliest, the offset of
    # the record with the largest timestamp, and the first offset at or after a timestamp.
    from helpers import create_topic

    create_topic(broker.bootstrap, topic_name, 3)
    base = 1_700_000_000_000
    stamps = {0: [base + 10, base + 50, base + 30, base + 20], 1: [base + 5], 2: []}
    acked = produce_with_timestamps(broker.bootstrap, topic_name, stamps)

    def offsets(time_spec: str) -> dict[int, int]:
        out = run_java_tool(GET_OFFSETS, "--bootstrap-server", broker.bootstrap, "--topic", topic_name, "--time", time_spec)
        rows = [line.rsplit(":", 2) for line in out.splitlines() if line.startswith(f"{topic_name}:")]
        return {int(p): int(o) for _, p, o in rows}

    def at_or_after(ts: int) -> dict[int, int]:
        return {
            p: acked[p][next(i for i, t in enumerate(s) if t >= ts)]
            for p, s in stamps.items()
            if any(t >= ts for t in s)
        }

    assert offsets("-1") == {p: len(s) for p, s in stamps.items()}
    assert offsets("latest") == offsets("-1")
    assert offsets("-2") == {0: 0, 1: 0, 2: 0}
    # The tool leaves out partitions without an offset (an empty log has no max timestamp).
    assert offsets("-3") == {p: acked[p][s.index(max(s))] for p, s in stamps.items() if s}
    assert offsets("max-timestamp") == offsets("-3")
    assert offsets(str(base + 25)) == at_or_after(base + 25) == {0: 1}
    assert offsets(str(base)) == at_or_after(base) == {0: 0, 1: 0}
    assert offsets(str(base + 1000)) == {}
    assert offsets("-4") == offsets("-2")  # no tiered storage: earliest local is earliest


def log_dirs(broker, *extra: str) -> dict:
    import json

    out = run_java_tool(LOG_DIRS, "--bootstrap-server", broker.bootstrap, "--describe", *extra)
    lines = out.splitlines()
    assert lines[0] == "Querying brokers for log directories information", out
    assert lines[1].startswith("Received log directory information from brokers "), out
    return json.loads(lines[2])


def test_log_dirs_describe(broker, topic_name):
    # Proves: kafka-log-dirs --describe lists the broker's one log dir with each partition's size
    # (the bytes of its .log files on disk), offset lag 0 for a leader, and no future replicas;
    # --topic-list keeps only that topic.
    import os
    from pathlib import Path

    from helpers import create_topic

    create_topic(broker.bootstrap, topic_name, 2)
    produce_with_timestamps(broker.bootstrap, topic_name, {0: [1_700_000_000_000 + i for i in range(20)]})

    described = log_dirs(broker, "--topic-list", topic_name)
    assert described["version"] == 1
    [only_broker] = described["brokers"]
    assert only_broker["broker"] == broker.node_id
    [log_dir] = only_broker["logDirs"]
    assert log_dir["error"] is None
    assert os.path.isabs(log_dir["logDir"]) and os.path.isdir(log_dir["logDir"]), log_dir
    partitions = {p["partition"]: p for p in log_dir["partitions"]}
    assert set(partitions) == {f"{topic_name}-0", f"{topic_name}-1"}, partitions
    for name, p in partitions.items():
        on_disk = sum(f.stat().st_size for f in (Path(log_dir["logDir"]) / name).glob("*.log"))
        assert p["size"] == on_disk, (name, p, on_disk)
        assert p["offsetLag"] == 0 and p["isFuture"] is False, p
    assert partitions[f"{topic_name}-0"]["size"] > 0
    assert partitions[f"{topic_name}-1"]["size"] == 0

    everything = log_dirs(broker)
    names = {p["partition"] for p in everything["brokers"][0]["logDirs"][0]["partitions"]}
    assert {f"{topic_name}-0", f"{topic_name}-1"} <= names


def test_leader_election_preferred(broker, topic_name):
    # Proves: kafka-leader-election --election-type preferred finds nothing to do on one broker:
    # --all-topic-partitions prints nothing and succeeds; a named partition is "already elected";
    # an unknown partition fails the command with the controller's error.
    import subprocess

    from helpers import create_topic, java_tool_argv

    create_topic(broker.bootstrap, topic_name, 2)
    out = run_java_tool(LEADER_ELECTION, "--bootstrap-server", broker.bootstrap, "--election-type", "preferred",
                        "--all-topic-partitions")
    assert out.strip() == "", out

    out = run_java_tool(LEADER_ELECTION, "--bootstrap-server", broker.bootstrap, "--election-type", "preferred",
                        "--topic", topic_name, "--partition", "1")
    assert out.strip() == f"Valid replica already elected for partitions {topic_name}-1", out

    done = subprocess.run(
        java_tool_argv(LEADER_ELECTION, "--bootstrap-server", broker.bootstrap, "--election-type", "unclean",
                       "--topic", topic_name, "--partition", "7"),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert f"No such partition as {topic_name}-7" in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert "1 replica(s) could not be elected" in done.stdout + done.stderr, (done.stdout, done.stderr)


FEATURES = "org.apache.kafka.tools.FeatureCommand"
FEATURE_LINE = re.compile(
    r"Feature: (\S+)\s+SupportedMinVersion: (\S+)\s+SupportedMaxVersion: (\S+)\s+"
    r"FinalizedVersionLevel: (\S+)\s+Epoch: (\S+)"
)


def describe_features(broker) -> dict[str, tuple[str, str, str, str]]:
    out = run_java_tool(FEATURES, "--bootstrap-server", broker.bootstrap, "describe")
    lines = [line for line in out.splitlines() if line.strip()]
    parsed = [FEATURE_LINE.fullmatch(line.strip()) for line in lines]
    assert all(parsed), out
    return {m.group(1): m.groups()[1:] for m in parsed}


def features_tool(broker, *args: str):
    import subprocess

    from helpers import java_tool_argv

    return subprocess.run(java_tool_argv(FEATURES, "--bootstrap-server", broker.bootstrap, *args),
                          capture_output=True, text=True, timeout=120)


def test_features_describe_upgrade_and_downgrade(broker):
    # Proves: kafka-features describe lists group.version as supported 0-1 and finalized at 1 with
    # a numeric epoch, in Kafka's line format; an upgrade past what the broker supports fails
    # with the controller's message; a dry-run downgrade changes nothing; a safe downgrade to 0
    # shows as finalized level 0 with a later epoch, and the upgrade back restores level 1.
    described = describe_features(broker)
    min_level, max_level, level, epoch = described["group.version"]
    assert (min_level, max_level, level) == ("0", "1", "1"), described
    assert int(epoch) >= 0

    refused = features_tool(broker, "upgrade", "--feature", "group.version=2")
    assert refused.returncode != 0
    assert re.search(
        r"Could not upgrade group.version to 2\. The update failed for all features since the following "
        r"feature had an error: Invalid update version 2 for feature group.version\. Local controller \d+ only "
        r"supports versions 0-1", refused.stdout), (refused.stdout, refused.stderr)

    dry = features_tool(broker, "downgrade", "--feature", "group.version=0", "--dry-run")
    assert dry.returncode == 0, (dry.stdout, dry.stderr)
    assert dry.stdout.strip() == "group.version can be downgraded to 0.", dry.stdout
    assert describe_features(broker)["group.version"][2] == "1"

    done = features_tool(broker, "downgrade", "--feature", "group.version=0")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip() == "group.version was downgraded to 0.", done.stdout
    _, _, level, later_epoch = wait_for_feature_level(broker, "group.version", "0")
    assert int(later_epoch) > int(epoch)

    back = features_tool(broker, "upgrade", "--feature", "group.version=1")
    assert back.returncode == 0, (back.stdout, back.stderr)
    assert back.stdout.strip() == "group.version was upgraded to 1.", back.stdout
    wait_for_feature_level(broker, "group.version", "1")


def wait_for_feature_level(broker, feature: str, level: str):
    """Kafka's brokers learn a committed level from the metadata log a moment later."""
    from helpers import wait_for

    return wait_for(lambda: (d := describe_features(broker)[feature]) and d[2] == level and d,
                    timeout_s=30, what=f"{feature} finalized at {level}")


@pytest.mark.broker_config({"broker.rack": "rack-a"})
def test_broker_api_versions_lists_the_broker_with_its_rack_and_lifecycle_apis(broker):
    # Proves: the broker is listed (Metadata) with its id, its configured `broker.rack` and
    # unfenced, and its client listener advertises UnregisterBroker v0 (Kafka serves it on the
    # broker and controller listeners; the tool prints UNSUPPORTED for an unadvertised API).
    out = run_java_tool(BROKER_API_VERSIONS, "--bootstrap-server", broker.bootstrap)
    assert re.search(r"\(id: \d+ rack: rack-a isFenced: false\)", out), out
    assert re.search(r"UnregisterBroker\(64\): 0 \[usable: 0\]", out), out
