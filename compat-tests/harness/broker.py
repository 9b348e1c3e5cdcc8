#!/usr/bin/env python3
"""Start one broker for one test: runnel (the default) or Apache Kafka, chosen by COMPAT_TARGET.

Every compat test talks to a broker it owns, so the same test file proves a behaviour against the real
Apache Kafka first and then holds runnel to it. This module is used two ways:

* from Python (pytest's `broker` fixture): `b = Broker(); b.start(); b.bootstrap; b.kill9(); b.restart()`;
* as a CLI for the other languages (kafkajs):
  `python broker.py start [--config key=value ...] [--ssl-listener]` prints one JSON line
  `{"bootstrap": ..., "pid": ..., "data_dir": ..., "log": ...}` once the broker answers Metadata, and leaves
  it running detached; `python broker.py stop --pid N [--data-dir D]` stops it (SIGTERM, then SIGKILL).

Environment:
  COMPAT_TARGET      runnel (default) | kafka
  RUNNEL_BIN         runnel binary (default <repo>/target/release/runnel)
  COMPAT_KEEP_DIRS   1 keeps each broker's temp dir (data + log) after stop, for post-mortems

An SSL listener (`Broker(ssl_listener=True)`, CLI `--ssl-listener`) is added beside PLAINTEXT on a port of its
own (`ssl_bootstrap`); its `ssl.*` keys are ordinary configs, the same Kafka names for both targets.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = COMPAT_DIR.parent
CACHE_DIR = COMPAT_DIR / ".cache"
KAFKA_LIBS_DIR = CACHE_DIR / "kafka-libs"
KAFKA_CONF_DIR = COMPAT_DIR / "kafka"

TARGETS = ("runnel", "kafka")

# Startup budgets. Kafka is a JVM that formats/recovers KRaft metadata and registers with its own
# controller before it serves clients; on a 2-core machine that shares CPU with cargo builds this can
# take tens of seconds, runnel should be up in well under a second.
START_TIMEOUT_S = {"runnel": 30.0, "kafka": 120.0}
STOP_TIMEOUT_S = {"runnel": 20.0, "kafka": 60.0}
# One Metadata round trip during the readiness probe.
PROBE_TIMEOUT_S = 3.0
LOG_TAIL_LINES = 80


def target_from_env() -> str:
    target = os.environ.get("COMPAT_TARGET", "runnel")
    if target not in TARGETS:
        raise ValueError(f"COMPAT_TARGET must be one of {TARGETS}, got {target!r}")
    return target


def free_port() -> int:
    """A port nobody listened on a moment ago, picked below the kernel's ephemeral range.

    `bind(0)` hands out ports from the ephemeral range, which every outgoing client connection
    also draws from: such a port can be taken by some test's client socket between this check and
    the broker's bind ("Address already in use"). Below that range only another explicit pick can
    clash, and a random pick over ~20,000 ports makes that rare.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low - 10000 >= 1000:
        rng = random.SystemRandom()
        for _ in range(1000):
            port = rng.randrange(10000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie counts as dead: our PID 1 may never reap detached brokers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state letter follows the parenthesised command name.
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_pid_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no broker log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string literal is a valid TOML basic string


def properties_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # Java properties escapes, so multi-line values (inline PEM) stay one entry.
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def parse_config_value(text: str):
    """CLI `key=value` -> bool/int/str, so runnel's TOML gets typed values."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text


def kafka_version() -> str:
    jars = sorted(KAFKA_LIBS_DIR.glob("kafka_2.13-*.jar"))
    if not jars:
        raise RuntimeError(f"no Kafka jars in {KAFKA_LIBS_DIR}; run compat-tests/setup.sh")
    return jars[-1].name[len("kafka_2.13-") : -len(".jar")]


def java_classpath() -> str:
    return f"{KAFKA_LIBS_DIR}/*"


class BrokerNotReady(RuntimeError):
    pass


class Broker:
    """One broker process with its own temp dir; restartable on the same data dir and port."""

    def __init__(
        self, target: str | None = None, configs: dict | None = None, node_id: int = 1, ssl_listener: bool = False,
        env: dict | None = None,
    ):
        self.target = target or target_from_env()
        self.configs = dict(configs or {})
        # Extra environment for the broker process (e.g. runnel's RUNNEL_FAILPOINTS); read at each
        # (re)start, so a test can change it between a crash and the restart.
        self.env = dict(env or {})
        self.node_id = node_id
        self.ssl_listener = ssl_listener
        self.ssl_port: int | None = None
        self.root_dir: Path | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self._argv: list[str] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.ssl_port}" if self.ssl_port else None

    def _listeners(self) -> str:
        """The client listeners, as both targets write `listeners` and `advertised.listeners`."""
        listeners = f"PLAINTEXT://{self.bootstrap}"
        if self.ssl_port:
            listeners += f",SSL://{self.ssl_bootstrap}"
        return listeners

    def _free_port(self) -> int:
        taken = {self.port, self.controller_port, self.ssl_port}
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "Broker":
        self.root_dir = Path(tempfile.mkdtemp(prefix=f"compat-{self.target}-"))
        self.data_dir = self.root_dir / "data"
        self.log_path = self.root_dir / "broker.log"
        self.port = free_port()
        if self.ssl_listener:
            self.ssl_port = self._free_port()
        if self.target == "runnel":
            self._argv = self._runnel_argv()
        else:
            self.controller_port = self._free_port()
            self._argv = self._kafka_argv()
        self._spawn()
        return self

    def restart(self) -> "Broker":
        """Start again on the same data dir and port (after stop() or kill9())."""
        if self.pid is not None and pid_alive(self.pid):
            raise RuntimeError("restart() while the broker still runs; stop() or kill9() first")
        self._spawn()
        return self

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit; SIGKILL if the broker does not exit in time."""
        if self.pid is None:
            return
        if pid_alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not self._wait_exit(STOP_TIMEOUT_S[self.target]):
                self._log_note(f"did not exit {STOP_TIMEOUT_S[self.target]}s after SIGTERM; SIGKILL")
                self.kill9()
        self._wait_exit(5.0)

    def kill9(self) -> None:
        """SIGKILL: a crash, no chance to flush or close anything."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._wait_exit(30.0)

    def cleanup(self) -> None:
        """Stop if running, then remove the temp dir unless COMPAT_KEEP_DIRS=1."""
        self.stop()
        if self.root_dir and os.environ.get("COMPAT_KEEP_DIRS") != "1":
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines) if self.log_path else "(broker never started)"

    def describe(self) -> dict:
        return {
            "bootstrap": self.bootstrap,
            "ssl_bootstrap": self.ssl_bootstrap,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "root_dir": str(self.root_dir),
            "target": self.target,
            "node_id": self.node_id,
        }

    # ---- runnel ----------------------------------------------------------------------------------

    def _runnel_argv(self) -> list[str]:
        binary = os.environ.get("RUNNEL_BIN") or str(REPO_DIR / "target" / "release" / "runnel")
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"runnel binary not found at {binary}; build it or set RUNNEL_BIN")
        self.data_dir.mkdir(parents=True)
        argv = [
            binary,
            "--listen", self._listeners(),
            "--advertised-listener", self._listeners(),
            "--data-dir", str(self.data_dir),
            "--node-id", str(self.node_id),
        ]
        if self.configs:
            config_path = self.root_dir / "runnel.toml"
            lines = ["# Extra broker configs for this test, Kafka names as keys."]
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in sorted(self.configs.items())]
            config_path.write_text("\n".join(lines) + "\n")
            argv += ["--config", str(config_path)]
        return argv

    # ---- Apache Kafka ----------------------------------------------------------------------------

    def _kafka_properties(self, log_dir: Path, port: int, controller_port: int) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL",
            "log.dirs": str(log_dir),
            "auto.create.topics.enable": True,
            "offsets.topic.replication.factor": 1,
            # librdkafka consumers look up a coordinator even when they only assign(); 50 partitions of
            # __consumer_offsets would cost seconds per test for nothing.
            "offsets.topic.num.partitions": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a SIGKILL the restarted node must wait for its previous incarnation's session to
            # expire before it may register again (DUPLICATE_BROKER_REGISTRATION); the 9 s default
            # would dominate the crash tests' run time.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 2000,
        }
        if self.ssl_port:
            props["listeners"] += f",SSL://{self.ssl_bootstrap}"
            props["advertised.listeners"] = self._listeners()
        props.update(self.configs)
        return "".join(f"{k}={properties_value(v)}\n" for k, v in props.items())

    def _kafka_java(self, main_class: str, *args: str, heap: str | None = None) -> list[str]:
        argv = ["java"]
        if heap:
            argv += [f"-Xmx{heap}", f"-Xms{heap}"]
        argv += [
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{KAFKA_CONF_DIR / 'log4j-broker.properties'}",
            "-cp", java_classpath(),
            main_class,
            *args,
        ]
        return argv

    def _kafka_storage_template(self) -> Path:
        """A KRaft log dir formatted once per machine and copied per broker.

        `StorageTool format` is a JVM start of its own (seconds); the formatted dir holds only
        cluster id, node id and the bootstrap metadata version, none of which depends on ports or paths.
        """
        template = CACHE_DIR / f"kafka-storage-template-{kafka_version()}-node{self.node_id}"
        if (template / "meta.properties").exists():
            return template
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with open(CACHE_DIR / ".kafka-storage-template.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (template / "meta.properties").exists():
                return template
            work = Path(tempfile.mkdtemp(prefix="kafka-format-", dir=CACHE_DIR))
            try:
                logs = work / "logs"
                props = work / "server.properties"
                props.write_text(self._kafka_properties(logs, 19092, 19093))
                cluster_id = subprocess.run(
                    self._kafka_java("kafka.tools.StorageTool", "random-uuid"),
                    check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                fmt = subprocess.run(
                    self._kafka_java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                    capture_output=True, text=True,
                )
                if fmt.returncode != 0:
                    raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
                logs.rename(template)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return template

    def _kafka_argv(self) -> list[str]:
        shutil.copytree(self._kafka_storage_template(), self.data_dir)
        props = self.root_dir / "server.properties"
        props.write_text(self._kafka_properties(self.data_dir, self.port, self.controller_port))
        return self._kafka_java("kafka.Kafka", str(props), heap="1G")

    # ---- process ---------------------------------------------------------------------------------

    def _log_note(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"\n[compat-harness] {text}\n")

    def _spawn(self) -> None:
        self._log_note(f"starting {self.target}: {' '.join(self._argv)}")
        # Plain text in the log file: no ANSI colours from runnel's tracing output.
        env = {**os.environ, "NO_COLOR": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root_dir,
                # Its own session: a Ctrl-C in the test terminal must not reach the broker first, and a
                # detached CLI-started broker outlives the CLI.
                start_new_session=True,
            )
        self.pid = self.proc.pid
        try:
            self._wait_ready(START_TIMEOUT_S[self.target])
        except BaseException:
            self.kill9()
            raise

    def _wait_exit(self, timeout_s: float) -> bool:
        if self.proc is not None and self.proc.pid == self.pid:
            try:
                self.proc.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        return wait_pid_exit(self.pid, timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready = the port accepts AND a Metadata round trip lists at least one broker."""
        deadline = time.monotonic() + timeout_s
        last_error = "port never accepted"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerNotReady(
                    f"{self.target} exited with {self.proc.returncode} during startup\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
            except OSError as e:
                last_error = f"connect: {e}"
                time.sleep(0.1)
                continue
            try:
                if self._metadata_probe():
                    return
                last_error = "metadata listed no brokers"
            except Exception as e:  # noqa: BLE001 - any probe failure means "not yet"
                last_error = f"metadata: {e}"
            time.sleep(0.2)
        raise BrokerNotReady(
            f"{self.target} not ready after {timeout_s}s ({last_error})\n{self.log_tail()}"
        )

    def _metadata_probe(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        metadata = admin.list_topics(timeout=PROBE_TIMEOUT_S)
        return len(metadata.brokers) >= 1


# ---- CLI ---------------------------------------------------------------------------------------------


def _cli_start(args) -> int:
    configs = {}
    for item in args.config or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config expects key=value, got {item!r}")
        configs[key] = parse_config_value(value)
    broker = Broker(target=args.target, configs=configs, node_id=args.node_id, ssl_listener=args.ssl_listener)
    try:
        broker.start()
    except Exception as e:
        print(str(e), file=sys.stderr)
        if broker.root_dir and os.environ.get("COMPAT_KEEP_DIRS") != "1":
            shutil.rmtree(broker.root_dir, ignore_errors=True)
        return 1
    print(json.dumps(broker.describe()), flush=True)
    return 0


def _cli_stop(args) -> int:
    if pid_alive(args.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(args.pid, signal.SIGTERM)
        if not wait_pid_exit(args.pid, args.timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(args.pid, signal.SIGKILL)
            wait_pid_exit(args.pid, 30.0)
    if args.data_dir and os.environ.get("COMPAT_KEEP_DIRS") != "1":
        # The broker's temp dir is the data dir's parent; it also holds the log and config.
        root = Path(args.data_dir).parent
        if root.name.startswith("compat-"):
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _cli_kill9(args) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.kill(args.pid, signal.SIGKILL)
    wait_pid_exit(args.pid, 30.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a broker, print its JSON description when ready")
    start.add_argument("--target", choices=TARGETS, default=None, help="default: $COMPAT_TARGET or runnel")
    start.add_argument("--config", action="append", metavar="KEY=VALUE", help="extra broker config (Kafka name)")
    start.add_argument("--node-id", type=int, default=1)
    start.add_argument("--ssl-listener", action="store_true", help="add an SSL listener (configure it with ssl.* keys)")
    stop = sub.add_parser("stop", help="SIGTERM a broker started by `start`, SIGKILL after --timeout")
    stop.add_argument("--pid", type=int, required=True)
    stop.add_argument("--data-dir", help="also remove this broker's temp dir")
    stop.add_argument("--timeout", type=float, default=60.0)
    kill9 = sub.add_parser("kill9", help="SIGKILL a broker started by `start`")
    kill9.add_argument("--pid", type=int, required=True)
    args = parser.parse_args(argv)
    return {"start": _cli_start, "stop": _cli_stop, "kill9": _cli_kill9}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
