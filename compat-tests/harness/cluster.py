#!/usr/bin/env python3
"""Start a three-node cluster for the 3-node compat tests: three runnel processes or three Apache Kafka 4.4
processes in KRaft combined mode (`process.roles=broker,controller`), chosen by COMPAT_TARGET.

Both targets get the same shape, so a test proves a behaviour against Kafka first and then holds runnel to it:
node ids 1..N, each node a client listener (PLAINTEXT) and a controller listener (CONTROLLER) on free loopback
ports, the static voter set `controller.quorum.voters=1@127.0.0.1:C1,2@...`, one data dir per node under one
temp folder.

* Kafka: each node's log dir is formatted (`kafka-storage format`, `kafka.tools.StorageTool`) with the same
  cluster id; the formatted dirs are cached once per machine and copied per cluster (formatting is a JVM start
  per node). Small heaps and a C1-only JIT keep three JVMs frugal on a 2-core machine.
* runnel: the TOML of contract 1 (Kafka's names: `process.roles`, `node.id`, `listeners`,
  `advertised.listeners`, `controller.listener.names`, `listener.security.protocol.map`,
  `controller.quorum.voters`) plus `--data-dir`; no format step (the first elected controller writes the id).

The cluster is ready when every node answers Metadata listing all N brokers.

`Cluster(quorum="dynamic")` starts a KIP-853 dynamic quorum instead: no `controller.quorum.voters`; every
node gets `controller.quorum.bootstrap.servers` = node 1's CONTROLLER endpoint. Node 1 starts first as the
quorum's only voter (Kafka: `kafka-storage format --standalone`; runnel: no format step, its bootstrap
servers name only itself), then the others start and replicate the metadata as observers (Kafka:
`format --no-initial-controllers`). Promoting them is up to the test (`kafka-metadata-quorum add-controller
--command-config <Node.command_config()>`); `Node.directory_id()` reads the id the CLI needs from the node's
`meta.properties`. Kafka's dynamic dirs are formatted per cluster: node 1's holds its own endpoint.

`Cluster(roles="isolated", nodes=5, controllers=3)` starts Kafka's isolated mode instead of combined nodes:
nodes 1..controllers are controller-only (`process.roles=controller`, only a CONTROLLER listener, the static
voter set), the rest broker-only (`process.roles=broker`, only a PLAINTEXT listener, not voters: they
replicate the metadata log as observers). Kafka formats every dir with the same cluster id and static voters
(cached per layout, as for combined nodes). A broker-only node is ready when it answers Metadata listing every
broker-only node; a controller-only node (no client listener) when its CONTROLLER listener answers
DescribeQuorum (as the leader, or NOT_LEADER_OR_FOLLOWER) and the quorum's leader lists it as a voter.
`Cluster.bootstrap` / `brokers` then name the broker-only nodes, `controllers` / `controller_nodes` the
controller-only ones; `Node.bootstrap` of a controller-only node (or `Node.controller` of a broker-only one)
raises.

Used three ways:
* from Python: `c = Cluster(); c.start(); c.bootstrap; c.nodes[0].kill9(); c.nodes[0].restart()`;
  `c.active_controller()` asks the quorum (DescribeQuorum on a controller listener) who leads;
* pytest fixtures (compat-tests/conftest.py): `cluster` (shared by the 3-node tests of one run, read-only
  use; `run.sh --nodes 3` starts it once and passes it in COMPAT_CLUSTER_FILE), `fresh_cluster` (its own
  three processes, for tests that kill nodes), `dynamic_cluster` and `isolated_cluster` (five nodes, shared by
  one module);
* a CLI for the other languages and for run.sh: `python cluster.py start [--nodes 3] [--config k=v ...]
  [--roles isolated --nodes 5 [--controllers 3]]`
  prints one JSON line (see `Cluster.describe`) once ready and leaves the processes running;
  `python cluster.py stop --file F` (or `--pids 1,2,3 --root DIR`) stops them.

Environment: COMPAT_TARGET, RUNNEL_BIN, COMPAT_KEEP_DIRS as for harness/broker.py; COMPAT_KAFKA_HEAP (each
Kafka node's heap, default 512m).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import (  # noqa: E402
    CACHE_DIR,
    KAFKA_CONF_DIR,
    REPO_DIR,
    STOP_TIMEOUT_S,
    TARGETS,
    free_port,
    java_classpath,
    kafka_version,
    log_tail,
    parse_config_value,
    pid_alive,
    properties_value,
    target_from_env,
    toml_value,
    wait_pid_exit,
)

DEFAULT_NODES = 3
QUORUM_MODES = ("static", "dynamic")
ROLE_MODES = ("combined", "isolated")
# process.roles of a node.
COMBINED, CONTROLLER_ONLY, BROKER_ONLY = "broker,controller", "controller", "broker"
# Controller-only nodes of an isolated cluster unless told otherwise (node ids 1..3; the rest are brokers).
DEFAULT_CONTROLLERS = 3
# Kafka's NOT_LEADER_OR_FOLLOWER: what a controller that does not lead answers DescribeQuorum with.
NOT_LEADER_OR_FOLLOWER = 6
# Three JVMs on two cores start slower than one; runnel should be up in well under a second.
START_TIMEOUT_S = {"runnel": 60.0, "kafka": 240.0}
PROBE_TIMEOUT_S = 3.0
KAFKA_HEAP = os.environ.get("COMPAT_KAFKA_HEAP", "512m")

# Settings both targets get (Kafka names). Internal topics at replication factor 1 because runnel refuses
# RF > 1 until "Cluster II"; 6 partitions of __consumer_offsets so group coordinators land on every node
# without Kafka creating 50 partitions on the first group. The session timeout as in harness/broker.py:
# a node restarted after kill -9 may only re-register once its old session expired.
CLUSTER_CONFIGS = {
    "offsets.topic.replication.factor": 1,
    "offsets.topic.num.partitions": 6,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "transaction.state.log.num.partitions": 3,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "group.initial.rebalance.delay.ms": 0,
    "auto.create.topics.enable": True,
    "broker.heartbeat.interval.ms": 500,
    "broker.session.timeout.ms": 2000,
}


class ClusterNotReady(RuntimeError):
    pass


class Node:
    """One process of the cluster; restartable on the same data dir and ports."""

    def __init__(self, cluster: "Cluster", node_id: int, port: int | None, controller_port: int | None,
                 roles: str = COMBINED):
        self.cluster = cluster
        self.node_id = node_id
        self.roles = roles  # process.roles
        self.port = port  # the client (PLAINTEXT) listener; None on a controller-only node
        self.controller_port = controller_port  # None on a broker-only node
        self.root_dir = cluster.root_dir / f"node{node_id}"
        self.data_dir = self.root_dir / "data"
        self.log_path = self.root_dir / "broker.log"
        # runnel's admin HTTP listener (metrics, /health, /ready): a port of each node's own, as three
        # nodes cannot share the default 127.0.0.1:9644.
        self.admin_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.argv: list[str] = []

    @property
    def target(self) -> str:
        return self.cluster.target

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles.split(",")

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles.split(",")

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise ValueError(f"node {self.node_id} ({self.roles}) has no client listener")
        return f"127.0.0.1:{self.port}"

    @property
    def controller(self) -> str:
        if self.controller_port is None:
            raise ValueError(f"node {self.node_id} ({self.roles}) has no CONTROLLER listener")
        return f"127.0.0.1:{self.controller_port}"

    def listeners(self) -> str:
        """`listeners` of this node: PLAINTEXT if it is a broker, CONTROLLER if it is a controller."""
        out = []
        if self.port is not None:
            out.append(f"PLAINTEXT://{self.bootstrap}")
        if self.controller_port is not None:
            out.append(f"CONTROLLER://{self.controller}")
        return ",".join(out)

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def spawn(self) -> None:
        self._note(f"starting {self.target} node {self.node_id}: {' '.join(self.argv)}")
        env = {**os.environ, "NO_COLOR": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root_dir, start_new_session=True,
            )
        self.pid = self.proc.pid

    def restart(self, wait: bool = True) -> "Node":
        """Start again on the same data dir and ports (after stop() or kill9()); waits until it serves."""
        if self.alive():
            raise RuntimeError(f"restart() of node {self.node_id} while it still runs")
        self.spawn()
        if wait:
            self.cluster.wait_ready([self])
        return self

    def kill9(self) -> None:
        """SIGKILL: a crash, no chance to flush or close anything."""
        if self.pid is None:
            return
        self._note("kill -9")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._wait_exit(30.0)

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not exit in time."""
        if self.pid is None or not pid_alive(self.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not self._wait_exit(STOP_TIMEOUT_S[self.target]):
            self._note(f"did not exit {STOP_TIMEOUT_S[self.target]}s after SIGTERM; SIGKILL")
            self.kill9()

    def _wait_exit(self, timeout_s: float) -> bool:
        if self.proc is not None and self.proc.pid == self.pid:
            try:
                self.proc.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        return wait_pid_exit(self.pid, timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def directory_id(self) -> str:
        """The `directory.id` of this node's metadata dir (its `meta.properties`), as the quorum knows it."""
        props = read_properties(self.data_dir / "meta.properties")
        if "directory.id" not in props:
            raise RuntimeError(f"no directory.id in {self.data_dir / 'meta.properties'}: {props}")
        return props["directory.id"]

    def command_config(self) -> Path:
        """A controller properties file naming this node, as `kafka-metadata-quorum --command-config` reads
        it for add-controller: node id, CONTROLLER listener and the metadata dir holding `meta.properties`.
        The same keys for both targets (for runnel the dir is its `--data-dir`)."""
        path = self.root_dir / "command-config.properties"
        props = {
            "process.roles": self.roles,
            "node.id": self.node_id,
            "controller.listener.names": "CONTROLLER",
            "listeners": self.listeners(),
            "log.dirs": str(self.data_dir),
        }
        path.write_text("".join(f"{k}={properties_value(v)}\n" for k, v in props.items()))
        return path

    def _note(self, text: str) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"\n[compat-harness {time.strftime('%H:%M:%S')}] {text}\n")

    def describe(self) -> dict:
        return {
            "node_id": self.node_id, "roles": self.roles,
            "bootstrap": self.bootstrap if self.port is not None else None,
            "controller": self.controller if self.controller_port is not None else None, "pid": self.pid,
            "data_dir": str(self.data_dir), "log": str(self.log_path), "argv": self.argv,
        }


class Cluster:
    """N nodes (default 3) of one target on loopback ports: each broker and controller (`roles="combined"`),
    or the first `controllers` controller-only and the rest broker-only (`roles="isolated"`)."""

    def __init__(self, target: str | None = None, nodes: int = DEFAULT_NODES, configs: dict | None = None,
                 kafka_heap: str | None = None, root_dir: Path | None = None, base_configs: dict | None = None,
                 quorum: str = "static", roles: str = "combined", controllers: int | None = None):
        self.target = target or target_from_env()
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}")
        if quorum not in QUORUM_MODES:
            raise ValueError(f"quorum must be one of {QUORUM_MODES}, got {quorum!r}")
        if roles not in ROLE_MODES:
            raise ValueError(f"roles must be one of {ROLE_MODES}, got {roles!r}")
        if roles == "isolated":
            if quorum != "static":
                raise ValueError("roles='isolated' starts a static quorum only")
            controllers = DEFAULT_CONTROLLERS if controllers is None else controllers
            if not 1 <= controllers < nodes:
                raise ValueError(f"an isolated cluster of {nodes} nodes needs 1..{nodes - 1} controllers, "
                                 f"got {controllers}")
        elif controllers is not None:
            raise ValueError("controllers= is for roles='isolated' (combined nodes are all controllers)")
        self.quorum = quorum
        self.roles = roles
        self.size = nodes
        self.kafka_cluster_id: str | None = None  # a dynamic Kafka quorum's, made at its first format
        # base_configs replaces the compat tests' CLUSTER_CONFIGS (the benchmark keeps Kafka's defaults).
        self.configs = {**(CLUSTER_CONFIGS if base_configs is None else base_configs), **(configs or {})}
        self.kafka_heap = kafka_heap or KAFKA_HEAP
        self.root_dir = root_dir or Path(tempfile.mkdtemp(prefix=f"compat-cluster-{self.target}-"))
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: list[Node] = []
        taken: set[int] = set()

        def port() -> int:
            p = free_port()
            while p in taken:
                p = free_port()
            taken.add(p)
            return p

        for node_id in range(1, nodes + 1):
            if roles == "combined":
                node_roles = COMBINED
            else:
                node_roles = CONTROLLER_ONLY if node_id <= controllers else BROKER_ONLY
            client = port() if "broker" in node_roles else None
            controller = port() if "controller" in node_roles else None
            self.nodes.append(Node(self, node_id, client, controller, node_roles))

    @classmethod
    def attach(cls, info: dict) -> "Cluster":
        """A Cluster object for processes another process started (`cluster.py start --out F`)."""
        c = cls.__new__(cls)
        c.target = info["target"]
        c.quorum = info.get("quorum", "static")
        c.roles = info.get("roles", "combined")
        c.size = len(info["nodes"])
        c.kafka_cluster_id = None
        c.configs = dict(info["configs"])
        c.kafka_heap = KAFKA_HEAP
        c.root_dir = Path(info["root_dir"])
        c.nodes = []
        for d in info["nodes"]:
            port = int(d["bootstrap"].rsplit(":", 1)[1]) if d.get("bootstrap") else None
            cport = int(d["controller"].rsplit(":", 1)[1]) if d.get("controller") else None
            n = Node(c, d["node_id"], port, cport, d.get("roles", COMBINED))
            n.pid, n.argv = d["pid"], d["argv"]
            c.nodes.append(n)
        return c

    # ---- addresses ---------------------------------------------------------------------------------

    @property
    def brokers(self) -> list[Node]:
        """The nodes with a client listener (every node, unless isolated)."""
        return [n for n in self.nodes if n.is_broker]

    @property
    def controller_nodes(self) -> list[Node]:
        """The nodes with a CONTROLLER listener, the static voters (every node, unless isolated)."""
        return [n for n in self.nodes if n.is_controller]

    @property
    def bootstrap(self) -> str:
        """Every broker's client listener, comma-separated (what clients take as bootstrap.servers)."""
        return ",".join(n.bootstrap for n in self.brokers)

    @property
    def controllers(self) -> str:
        """Every controller listener (`kafka-metadata-quorum --bootstrap-controller`)."""
        return ",".join(n.controller for n in self.controller_nodes)

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{n.controller}" for n in self.controller_nodes)

    @property
    def quorum_bootstrap(self) -> str:
        """`controller.quorum.bootstrap.servers` of a dynamic quorum: the first node's CONTROLLER endpoint."""
        return self.nodes[0].controller

    def _quorum_configs(self) -> dict:
        if self.quorum == "dynamic":
            return {"controller.quorum.bootstrap.servers": self.quorum_bootstrap}
        return {"controller.quorum.voters": self.voters}

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def live_bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.live_nodes() if n.is_broker)

    def describe(self) -> dict:
        # A static quorum's voter string, or a dynamic one's bootstrap servers (its voters change).
        quorum = {"quorum_bootstrap": self.quorum_bootstrap} if self.quorum == "dynamic" else {"voters": self.voters}
        return {
            "target": self.target, "quorum": self.quorum, "roles": self.roles, "bootstrap": self.bootstrap,
            "controllers": self.controllers, **quorum, "root_dir": str(self.root_dir),
            "nodes": [n.describe() for n in self.nodes], "configs": self.configs,
        }

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "Cluster":
        for n in self.nodes:
            n.root_dir.mkdir(parents=True, exist_ok=True)
            n.argv = self._runnel_argv(n) if self.target == "runnel" else self._kafka_argv(n)
        try:
            if self.quorum == "dynamic":
                # The first node alone is the quorum; the others can only join one that runs.
                first, rest = self.nodes[0], self.nodes[1:]
                first.spawn()
                self.wait_ready([first], brokers={first.node_id})
                for n in rest:
                    n.spawn()
                self.wait_ready(rest)
            else:
                for n in self.nodes:
                    n.spawn()
                self.wait_ready(self.nodes)
        except BaseException:
            for n in self.nodes:
                n.kill9()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM every node and wait. Brokers first, controller-only nodes once the brokers are gone: a
        Kafka broker's controlled shutdown asks the active controller, and waits for it in vain (until
        SIGKILL) if the controllers went first."""
        for group in ([n for n in self.nodes if n.is_broker], [n for n in self.nodes if not n.is_broker]):
            for n in group:
                if n.alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(n.pid, signal.SIGTERM)
            for n in group:
                n.stop()

    def kill9_all(self) -> None:
        for n in self.nodes:
            n.kill9()

    def restart_all(self) -> None:
        """Start every stopped node (all at once: a quorum needs a majority to serve any of them)."""
        down = [n for n in self.nodes if not n.alive()]
        for n in down:
            n.spawn()
        self.wait_ready(down)

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("COMPAT_KEEP_DIRS") != "1":
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- node {n.node_id} ({n.log_path}) ---\n{n.log_tail(lines)}" for n in self.nodes)

    def wait_ready(self, nodes: list[Node], timeout_s: float | None = None, brokers: set[int] | None = None) -> None:
        """Ready = each broker of `nodes` answers Metadata listing every broker of the cluster (or `brokers`);
        each controller-only node of `nodes` answers DescribeQuorum on its CONTROLLER listener and the
        quorum's leader lists it as a voter."""
        timeout_s = timeout_s or START_TIMEOUT_S[self.target]
        expected = brokers if brokers is not None else {m.node_id for m in self.brokers}
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        last = "no probe yet"
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                if not n.alive():
                    raise ClusterNotReady(
                        f"{self.target} node {n.node_id} exited during startup\n{self.log_tails()}")
                try:
                    if n.is_broker:
                        ids = self.broker_ids(n.bootstrap)
                        ready = ids == expected
                        last = f"node {n.node_id} lists brokers {sorted(ids)}"
                    else:
                        ready, last = self._controller_ready(n)
                except Exception as e:  # noqa: BLE001 - any probe failure means "not yet"
                    last = f"node {n.node_id}: {e}"
                    continue
                if ready:
                    pending.remove(n)
            if pending:
                time.sleep(0.3)
        if pending:
            raise ClusterNotReady(f"{self.target} cluster not ready after {timeout_s}s ({last})\n{self.log_tails()}")

    def _controller_ready(self, n: Node) -> tuple[bool, str]:
        """A controller-only node (no client listener to ask for Metadata): its CONTROLLER listener answers
        DescribeQuorum, as the leader or with NOT_LEADER_OR_FOLLOWER, and the leader lists it as a voter."""
        try:
            q = describe_quorum(n.controller, PROBE_TIMEOUT_S)
        except QuorumError as e:
            if e.code != NOT_LEADER_OR_FOLLOWER:
                raise
            q = self.describe_quorum(PROBE_TIMEOUT_S)
        if q["leader_id"] < 0:
            return False, f"node {n.node_id}: no leader yet ({q})"
        voters = {rid for rid, _ in q["voters"]}
        return n.node_id in voters, f"node {n.node_id}: leader {q['leader_id']} lists voters {sorted(voters)}"

    @staticmethod
    def broker_ids(bootstrap: str) -> set[int]:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
        return set(admin.list_topics(timeout=PROBE_TIMEOUT_S).brokers)

    # ---- the quorum --------------------------------------------------------------------------------

    def describe_quorum(self, timeout_s: float = 5.0) -> dict:
        """DescribeQuorum v0 (API 55) for __cluster_metadata-0 on the first live node's controller listener
        that answers: {"leader_id", "leader_epoch", "high_watermark", "voters": [(id, log_end_offset)],
        "observers": [...], "asked": node_id}. Raises if no live node answers."""
        errors = []
        for n in self.live_nodes():
            if not n.is_controller:
                continue
            try:
                out = describe_quorum(n.controller, timeout_s)
                out["asked"] = n.node_id
                return out
            except Exception as e:  # noqa: BLE001
                errors.append(f"node {n.node_id}: {e}")
        raise RuntimeError(f"no controller answered DescribeQuorum: {errors}")

    def active_controller(self, timeout_s: float = 60.0) -> int:
        """The leader of the metadata quorum, waiting (up to timeout_s) until one is elected."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                q = self.describe_quorum()
                if q["leader_id"] >= 0 and self.node(q["leader_id"]).alive():
                    return q["leader_id"]
                last = q
            except Exception as e:  # noqa: BLE001
                last = str(e)
            time.sleep(0.1)
        raise AssertionError(f"no active controller after {timeout_s}s (last: {last})")

    # ---- runnel ------------------------------------------------------------------------------------

    def _runnel_argv(self, n: Node) -> list[str]:
        binary = os.environ.get("RUNNEL_BIN") or str(REPO_DIR / "target" / "release" / "runnel")
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"runnel binary not found at {binary}; build it or set RUNNEL_BIN")
        n.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.root_dir / f"node{n.node_id}.toml"
        if n.admin_port is None:
            taken = {p for m in self.nodes for p in (m.port, m.controller_port, m.admin_port)}
            n.admin_port = free_port()
            while n.admin_port in taken:
                n.admin_port = free_port()
        configs = {"runnel.admin.listener": f"127.0.0.1:{n.admin_port}", **self.configs}
        config.write_text(runnel_node_toml(
            n.node_id, n.bootstrap if n.is_broker else None, n.controller if n.is_controller else None,
            self._quorum_configs(), configs, size=self.size, roles=n.roles))
        return [binary, "--config", str(config), "--data-dir", str(n.data_dir)]

    # ---- Apache Kafka ------------------------------------------------------------------------------

    def _kafka_properties(self, node_id: int, log_dir: Path, port: int | None, controller_port: int | None,
                          quorum: dict, roles: str = COMBINED) -> str:
        """A node's server.properties. A controller-only node gets only its CONTROLLER listener (and no
        broker listener settings), a broker-only node only PLAINTEXT (it reaches the controllers through the
        voters' endpoints, named CONTROLLER)."""
        listeners = []
        if "broker" in roles.split(","):
            listeners.append(f"PLAINTEXT://127.0.0.1:{port}")
        if "controller" in roles.split(","):
            listeners.append(f"CONTROLLER://127.0.0.1:{controller_port}")
        props = {
            "process.roles": roles,
            "node.id": node_id,
            **quorum,
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(log_dir),
        }
        if "broker" in roles.split(","):
            props["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{port}"
            props["inter.broker.listener.name"] = "PLAINTEXT"
        props.update(self.configs)
        return "".join(f"{k}={properties_value(v)}\n" for k, v in props.items())

    def _java(self, main_class: str, *args: str, heap: str | None = None) -> list[str]:
        argv = ["java"]
        if heap:
            # Small fixed heaps, the serial collector and C1 only: three broker JVMs share two cores with
            # the clients under test; none of the 3-node tests is throughput-bound.
            argv += [f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        else:
            argv += ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        argv += [
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-broker.properties'}",
            "-cp", java_classpath(), main_class, *args,
        ]
        return argv

    def _kafka_storage_templates(self) -> Path:
        """Log dirs of nodes 1..N formatted with one cluster id, once per machine (per layout: combined, or
        isolated with its number of controllers); copied per cluster.

        With a static voter set the formatted dir holds cluster id, node id, a directory id and the
        bootstrap metadata version: nothing that depends on ports or paths.
        """
        layout = f"{self.size}nodes"
        if self.roles == "isolated":
            layout = f"isolated-{len(self.controller_nodes)}controllers-{len(self.brokers)}brokers"
        template = CACHE_DIR / f"kafka-cluster-template-{kafka_version()}-{layout}"
        if all((template / f"node{i}" / "meta.properties").exists() for i in range(1, self.size + 1)):
            return template
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with open(CACHE_DIR / ".kafka-cluster-template.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if all((template / f"node{i}" / "meta.properties").exists() for i in range(1, self.size + 1)):
                return template
            work = Path(tempfile.mkdtemp(prefix="kafka-format-cluster-", dir=CACHE_DIR))
            try:
                cluster_id = subprocess.run(
                    self._java("kafka.tools.StorageTool", "random-uuid"), check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                voters = ",".join(f"{n.node_id}@127.0.0.1:{19093 + 10 * n.node_id}" for n in self.controller_nodes)
                for n in self.nodes:
                    i = n.node_id
                    props = work / f"node{i}.properties"
                    props.write_text(self._kafka_properties(i, work / f"node{i}", 19092 + 10 * i, 19093 + 10 * i,
                                                            {"controller.quorum.voters": voters}, n.roles))
                    fmt = subprocess.run(
                        self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                        capture_output=True, text=True,
                    )
                    if fmt.returncode != 0:
                        raise RuntimeError(f"kafka storage format of node {i} failed:\n{fmt.stdout}\n{fmt.stderr}")
                    props.unlink()
                shutil.rmtree(template, ignore_errors=True)
                work.rename(template)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return template

    def _kafka_argv(self, n: Node) -> list[str]:
        props = n.root_dir / "server.properties"
        props.write_text(self._kafka_properties(n.node_id, n.data_dir, n.port, n.controller_port,
                                                self._quorum_configs(), n.roles))
        if self.quorum == "dynamic":
            self._kafka_format_dynamic(n, props)
        else:
            shutil.copytree(self._kafka_storage_templates() / f"node{n.node_id}", n.data_dir)
        return self._java("kafka.Kafka", str(props), heap=self.kafka_heap)

    def _kafka_format_dynamic(self, n: Node, props: Path) -> None:
        """`kafka-storage format` for a dynamic quorum: the first node `--standalone` (its bootstrap
        checkpoint holds it as the only voter, with its endpoint, so it is formatted per cluster), the others
        `--no-initial-controllers` (they join as observers)."""
        if self.kafka_cluster_id is None:
            self.kafka_cluster_id = random_kafka_uuid()
        mode = "--standalone" if n is self.nodes[0] else "--no-initial-controllers"
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", self.kafka_cluster_id, "-c", str(props), mode),
            capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format {mode} of node {n.node_id} failed:\n{fmt.stdout}\n{fmt.stderr}")


def runnel_node_toml(node_id: int, client: str | None, controller: str | None, quorum: str | dict, configs: dict,
                     rack: str | None = None, size: int | None = None, roles: str = COMBINED) -> str:
    """One node's runnel config as contract 1 writes it (Kafka's names; `--data-dir` on the command line).

    `quorum` is the static voter string (`controller.quorum.voters`) or the quorum keys themselves
    (e.g. `{"controller.quorum.bootstrap.servers": ...}` for a dynamic quorum). `roles` is `process.roles`:
    a controller-only node has no `client` listener, a broker-only node no `controller` listener (as
    deploy/cluster/isolated/*.toml)."""
    if isinstance(quorum, str):
        quorum = {"controller.quorum.voters": quorum}
    listeners = []
    if "broker" in roles.split(","):
        listeners.append(f"PLAINTEXT://{client}")
    if "controller" in roles.split(","):
        listeners.append(f"CONTROLLER://{controller}")
    base = {"process.roles": roles, "node.id": node_id, "listeners": ",".join(listeners)}
    if "broker" in roles.split(","):
        base["advertised.listeners"] = f"PLAINTEXT://{client}"
    base["controller.listener.names"] = "CONTROLLER"
    base["listener.security.protocol.map"] = (
        "CONTROLLER:PLAINTEXT" if roles == CONTROLLER_ONLY else "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
    base.update(quorum)
    if rack:
        base["broker.rack"] = rack
    if size is None:
        size = len(quorum.get("controller.quorum.voters", "").split(","))
    lines = [f"# runnel node {node_id} ({roles}) of a {size}-node cluster (Kafka config names)."]
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in base.items()]
    extra = {k: v for k, v in configs.items() if k not in base}
    if extra:
        lines.append("")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file's `key=value` lines (what meta.properties holds; no escapes in it)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def random_kafka_uuid() -> str:
    """A cluster id as `kafka-storage random-uuid` prints one (16 random bytes, URL-safe base64, unpadded,
    not starting with '-'), without a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


# ---- DescribeQuorum on the wire ------------------------------------------------------------------------

DESCRIBE_QUORUM = 55
METADATA_TOPIC = "__cluster_metadata"


class QuorumError(RuntimeError):
    """DescribeQuorum answered an error code (top level or the partition's)."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


def describe_quorum(controller: str, timeout_s: float = 5.0) -> dict:
    """DescribeQuorum v0 to one controller listener (what `kafka-metadata-quorum` asks, without a JVM)."""
    from config_wire import _compact_str, _exchange, _uvarint

    body = _uvarint(2) + _compact_str(METADATA_TOPIC) + _uvarint(2) + struct.pack(">i", 0) + _uvarint(0)
    body += _uvarint(0) + _uvarint(0)
    r = _exchange(controller, DESCRIBE_QUORUM, 0, body, timeout_s)
    error = r.i16()
    if error:
        raise QuorumError(error, f"DescribeQuorum error code {error}")

    def replica():
        rid = r.i32()
        leo = struct.unpack(">q", r.take(8))[0]
        r.tags()
        return (rid, leo)

    def partition():
        index = r.i32()
        err = r.i16()
        leader, epoch = r.i32(), r.i32()
        hw = struct.unpack(">q", r.take(8))[0]
        voters = r.array(replica)
        observers = r.array(replica)
        r.tags()
        return {"partition": index, "error": err, "leader_id": leader, "leader_epoch": epoch,
                "high_watermark": hw, "voters": voters, "observers": observers}

    def topic():
        name = r.compact_str()
        parts = r.array(partition)
        r.tags()
        return name, parts

    topics = r.array(topic)
    for name, parts in topics:
        if name == METADATA_TOPIC and parts:
            p = parts[0]
            if p["error"]:
                raise QuorumError(p["error"], f"DescribeQuorum partition error code {p['error']}")
            return p
    raise RuntimeError(f"DescribeQuorum answered no {METADATA_TOPIC} partition: {topics}")


# ---- CLI -----------------------------------------------------------------------------------------------


def _cli_start(args) -> int:
    configs = {}
    for item in args.config or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config expects key=value, got {item!r}")
        configs[key] = parse_config_value(value)
    cluster = Cluster(target=args.target, nodes=args.nodes, configs=configs, quorum=args.quorum, roles=args.roles,
                      controllers=args.controllers)
    try:
        cluster.start()
    except Exception as e:
        print(str(e), file=sys.stderr)
        if os.environ.get("COMPAT_KEEP_DIRS") != "1":
            shutil.rmtree(cluster.root_dir, ignore_errors=True)
        return 1
    text = json.dumps(cluster.describe())
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text, flush=True)
    return 0


def _cli_stop(args) -> int:
    if args.file:
        info = json.loads(Path(args.file).read_text())
        # Brokers first, controller-only nodes after them (as Cluster.stop).
        is_broker = ["broker" in n.get("roles", COMBINED).split(",") for n in info["nodes"]]
        groups = [[n["pid"] for n, b in zip(info["nodes"], is_broker) if b],
                  [n["pid"] for n, b in zip(info["nodes"], is_broker) if not b]]
        root = info["root_dir"]
    else:
        groups = [[int(p) for p in args.pids.split(",") if p]]
        root = args.root
    for pids in groups:
        for pid in pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for pid in pids:
            if not wait_pid_exit(pid, args.timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_pid_exit(pid, 30.0)
    if root and os.environ.get("COMPAT_KEEP_DIRS") != "1" and Path(root).name.startswith("compat-cluster-"):
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a cluster, print its JSON description when ready")
    start.add_argument("--target", choices=TARGETS, default=None, help="default: $COMPAT_TARGET or runnel")
    start.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    start.add_argument("--config", action="append", metavar="KEY=VALUE", help="extra config for every node")
    start.add_argument("--quorum", choices=QUORUM_MODES, default="static",
                       help="dynamic: node 1 the only voter, the others observers (KIP-853)")
    start.add_argument("--roles", choices=ROLE_MODES, default="combined",
                       help="isolated: the first --controllers nodes controller-only, the rest broker-only")
    start.add_argument("--controllers", type=int, default=None,
                       help=f"controller-only nodes of an isolated cluster (default {DEFAULT_CONTROLLERS})")
    start.add_argument("--out", help="also write the JSON description to this file")
    stop = sub.add_parser("stop", help="stop a cluster started by `start` (SIGTERM, SIGKILL after --timeout)")
    stop.add_argument("--file", help="the JSON description `start --out` wrote")
    stop.add_argument("--pids", help="comma-separated pids (instead of --file)")
    stop.add_argument("--root", help="the cluster's temp dir to remove (with --pids)")
    stop.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    return {"start": _cli_start, "stop": _cli_stop}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
