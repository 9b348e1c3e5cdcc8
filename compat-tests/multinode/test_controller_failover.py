"""kill -9 of the active controller during a storm of admin changes, on a three-node cluster of its own.

Runs only in 3-node mode (`compat-tests/run.sh --nodes 3`).
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from helpers import wait_for

pytestmark = pytest.mark.nodes3

# Kafka's defaults (the cluster sets none of them): a follower gives up on a silent leader after the fetch
# timeout, then an election takes about an election timeout (plus a random back-off of up to as much).
FETCH_TIMEOUT_MS = 2000
ELECTION_TIMEOUT_MS = 1000
# "A new leader within a few election timeouts" once the followers noticed the leader is gone.
ELECTION_BOUND_S = (FETCH_TIMEOUT_MS + 5 * ELECTION_TIMEOUT_MS) / 1000
STORM_BEFORE_KILL_S = 3.0
STORM_AFTER_ELECTION_S = 4.0
PARTITIONS = 3


class Storm(threading.Thread):
    """CreateTopics, DeleteTopics and IncrementalAlterConfigs in a loop; records what was acknowledged.

    Each topic has at most one create, one config change and one delete, so what an acknowledged change
    implies for the final state does not depend on the order of unacknowledged ones.
    """

    def __init__(self, bootstrap: str, prefix: str):
        super().__init__(daemon=True)
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
        self.prefix = prefix
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[float, str, str, str | None]] = []  # (time, op, topic, value)
        self.failed: list[tuple[float, str, str, str]] = []
        self.attempted_deletes: set[str] = set()
        self.attempted_configs: set[str] = set()

    def record(self, op, topic, value, err=None):
        with self.lock:
            if err is None:
                self.acked.append((time.monotonic(), op, topic, value))
            else:
                self.failed.append((time.monotonic(), op, topic, str(err)))

    def run(self):
        i = 0
        created: list[str] = []
        while not self.stop_flag.is_set():
            step = i % 3
            try:
                if step == 0 or not created:
                    topic = f"{self.prefix}-{i}"
                    f = self.admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                                                 request_timeout=10, operation_timeout=10)[topic]
                    self._wait(f, "create", topic, None)
                    created.append(topic)
                elif step == 1:
                    topic = created[-1]
                    value = str(3_600_000 + i)
                    self.attempted_configs.add(topic)
                    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
                        ConfigEntry("retention.ms", value, incremental_operation=AlterConfigOpType.SET)])
                    f = self.admin.incremental_alter_configs([res], request_timeout=10)[res]
                    self._wait(f, "config", topic, value)
                else:
                    # Delete every other created topic, oldest first, so some stay to be checked.
                    topic = created.pop(0)
                    if topic in self.attempted_configs:
                        i += 1
                        continue
                    self.attempted_deletes.add(topic)
                    f = self.admin.delete_topics([topic], request_timeout=10, operation_timeout=10)[topic]
                    self._wait(f, "delete", topic, None)
            except Exception as e:  # noqa: BLE001 - any failure is an unacknowledged change
                self.record("error", "", None, e)
            i += 1

    def _wait(self, future, op, topic, value):
        try:
            future.result(timeout=15)
        except Exception as e:  # noqa: BLE001
            self.record(op, topic, value, e)
            time.sleep(0.1)
            return
        self.record(op, topic, value)

    def acked_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for at, *_ in self.acked if at >= t)


def test_kill9_active_controller_during_admin_storm(fresh_cluster):
    # Proves: with CreateTopics / DeleteTopics / IncrementalAlterConfigs running, kill -9 of the active
    # controller leads to a new leader among the survivors (higher epoch) within fetch timeout + 5 election
    # timeouts; admin changes are acknowledged again afterwards; and once every node was killed and restarted,
    # every acknowledged change is there: acknowledged creates exist with their partitions (unless an
    # acknowledged delete followed), acknowledged deletes are gone, acknowledged configs hold their value.
    cluster = fresh_cluster
    old_leader = cluster.active_controller()
    old_epoch = cluster.describe_quorum()["leader_epoch"]
    storm = Storm(cluster.bootstrap, "storm")
    storm.start()
    try:
        time.sleep(STORM_BEFORE_KILL_S)
        assert storm.acked_since(0) >= 3, f"the storm got nothing acknowledged before the kill: {storm.failed[:5]}"
        killed_at = time.monotonic()
        cluster.node(old_leader).kill9()

        def new_leader():
            try:
                q = cluster.describe_quorum(timeout_s=1.0)
            except Exception:  # noqa: BLE001 - no survivor answers as leader yet
                return None
            return q if q["leader_id"] not in (-1, old_leader) and q["leader_epoch"] > old_epoch else None

        q = wait_for(new_leader, timeout_s=60, interval_s=0.05, what="a new quorum leader")
        elected_s = time.monotonic() - killed_at
        assert elected_s <= ELECTION_BOUND_S, f"new leader {q['leader_id']} after {elected_s:.1f}s"
        elected_at = time.monotonic()
        time.sleep(STORM_AFTER_ELECTION_S)
        wait_for(lambda: storm.acked_since(elected_at) >= 3, timeout_s=30,
                 what="admin changes acknowledged under the new controller")
    finally:
        storm.stop_flag.set()
        storm.join(60)
    print(f"new leader {q['leader_id']} (epoch {q['leader_epoch']}) {elected_s:.2f}s after kill -9 of "
          f"{old_leader}; {len(storm.acked)} acknowledged, {len(storm.failed)} failed changes")

    # Crash the survivors too, then bring every node back on its data.
    cluster.kill9_all()
    cluster.restart_all()
    cluster.active_controller()

    acked = list(storm.acked)
    deleted = {t for _, op, t, _ in acked if op == "delete"}
    created = {t for _, op, t, _ in acked if op == "create"}
    configs = {t: v for _, op, t, v in acked if op == "config"}
    must_exist = created - storm.attempted_deletes
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def state_holds():
        topics = admin.list_topics(timeout=10).topics
        missing = sorted(t for t in must_exist if t not in topics or len(topics[t].partitions) != PARTITIONS)
        present = sorted(t for t in deleted if t in topics)
        return None if missing or present else topics

    def why():
        topics = admin.list_topics(timeout=10).topics
        return (f"missing: {sorted(t for t in must_exist if t not in topics)}; "
                f"deleted but present: {sorted(t for t in deleted if t in topics)}")

    try:
        wait_for(state_holds, timeout_s=60, what="acknowledged creates and deletes after the restart")
    except AssertionError as e:
        raise AssertionError(f"{e}: {why()}") from None
    for topic, value in configs.items():
        if topic in storm.attempted_deletes:
            continue
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries = admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)
        assert entries["retention.ms"].value == value, (topic, entries["retention.ms"].value, value)
    assert must_exist, "no acknowledged create to check"
