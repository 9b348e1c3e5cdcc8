"""Start and stop one broker for a benchmark: runnel or a single-node KRaft Apache Kafka.

Both bind the same client port and keep data under the same data root, one at a time, so they see the
same disk, page cache and loopback. Each start gets an empty data dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
KAFKA_LIBS_DIR = REPO_DIR / "compat-tests" / ".cache" / "kafka-libs"
# Read-only reuse of the compat suite's reload4j configs: broker INFO to its log, tools WARN to stderr.
KAFKA_LOG4J_BROKER = REPO_DIR / "compat-tests" / "kafka" / "log4j-broker.properties"
KAFKA_LOG4J_TOOLS = REPO_DIR / "compat-tests" / "kafka" / "log4j-tools.properties"
# RUNNEL_BIN overrides the release build (e.g. to smoke-test a workload with a debug binary).
RUNNEL_BIN = Path(os.environ.get("RUNNEL_BIN", REPO_DIR / "target" / "release" / "runnel"))
LOADGEN_BIN = BENCH_DIR / "loadgen" / "target" / "release" / "loadgen"

# The heap Kafka's own kafka-server-start.sh sets.
KAFKA_HEAP = "1G"
STOP_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def kafka_version() -> str:
    jars = sorted(KAFKA_LIBS_DIR.glob("kafka_2.13-*.jar"))
    if not jars:
        raise RuntimeError(f"no Kafka jars in {KAFKA_LIBS_DIR}; run compat-tests/setup.sh")
    return jars[-1].name[len("kafka_2.13-"):-len(".jar")]


def java(main_class: str, *args: str, heap: str | None = None, log4j: Path = KAFKA_LOG4J_TOOLS) -> list[str]:
    argv = ["java"]
    if heap:
        argv += [f"-Xmx{heap}", f"-Xms{heap}"]
    # The flags kafka-run-class.sh adds for the broker and tools.
    argv += ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
             f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{KAFKA_LIBS_DIR}/*", main_class, *args]
    return argv


def proc_stats(pid: int) -> dict:
    """CPU seconds (utime+stime, all threads) and memory of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                mem[key] = int(value.split()[0])  # kB, or a count for Threads
    return {
        "cpu_s": cpu_s,
        "peak_rss_mib": mem.get("VmHWM", 0) / 1024,
        "rss_mib": mem.get("VmRSS", 0) / 1024,
        "rss_anon_mib": mem.get("RssAnon", 0) / 1024,
        "rss_file_mib": mem.get("RssFile", 0) / 1024,
        "threads": mem.get("Threads", 0),
    }


def loadgen(*args: str, timeout_s: float = 900.0) -> dict:
    """Run one loadgen subcommand; its last stdout line is a JSON object."""
    env = {**os.environ, "RUST_BACKTRACE": "0"}  # keep the error, not a backtrace, in failure reports
    done = subprocess.run([str(LOADGEN_BIN), *args], capture_output=True, text=True, timeout=timeout_s, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Broker:
    """One broker process on a fresh data dir. `target` is "runnel" or "kafka"."""

    def __init__(self, target: str, data_root: Path, port: int, controller_port: int, configs: dict | None = None):
        self.target = target
        self.data_root = data_root
        self.port = port
        self.controller_port = controller_port
        self.configs = dict(configs or {})
        self.dir = data_root / f"{target}-broker"
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "broker.log"
        self.proc: subprocess.Popen | None = None
        self.spawn_unix_ns = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "broker not started"
        return self.proc.pid

    def stats(self) -> dict:
        return proc_stats(self.pid)

    def start(self, wait: bool = True, ready_timeout_s: float = 180.0, fresh: bool = True) -> "Broker":
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
        argv = self._runnel_argv() if self.target == "runnel" else self._kafka_argv()
        env = {**os.environ, "NO_COLOR": "1"}
        with open(self.log_path, "ab") as log:
            self.spawn_unix_ns = time.time_ns()
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        if wait:
            try:
                loadgen("probe", "--bootstrap", self.bootstrap, "--timeout-s", str(ready_timeout_s),
                        timeout_s=ready_timeout_s + 10)
            except Exception:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self, configs: dict) -> "Broker":
        """Stops and starts again on the same data with `configs` added (runnel only)."""
        assert self.target == "runnel", "only runnel restarts keep their data here"
        self.stop()
        self.configs.update(configs)
        return self.start(fresh=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- runnel ----------------------------------------------------------------------------------

    def _runnel_argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(RUNNEL_BIN), "--listen", self.bootstrap, "--data-dir", str(self.data_dir), "--node-id", "1"]
        if self.configs:
            path = self.dir / "runnel.toml"
            path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in sorted(self.configs.items())))
            argv += ["--config", str(path)]
        return argv

    # ---- Apache Kafka ----------------------------------------------------------------------------

    def _kafka_properties(self, log_dir: Path) -> str:
        # Only what a single KRaft node needs to run at all (replication factor 1 for internal topics);
        # everything else stays at Kafka's defaults, as a user would start it.
        props = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(log_dir),
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
        }
        props.update(self.configs)
        return "".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}\n" for k, v in props.items())

    def _kafka_storage_template(self) -> Path:
        """`kafka-storage format` once per data root; a formatted dir holds no ports or paths."""
        template = self.data_root / f"kafka-storage-template-{kafka_version()}"
        if (template / "meta.properties").exists():
            return template
        work = self.data_root / "kafka-format"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        props = work / "server.properties"
        props.write_text(self._kafka_properties(work / "logs"))
        cluster_id = subprocess.run(java("kafka.tools.StorageTool", "random-uuid"), check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1]
        subprocess.run(java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                       check=True, capture_output=True, text=True)
        (work / "logs").rename(template)
        shutil.rmtree(work, ignore_errors=True)
        return template

    def _kafka_argv(self) -> list[str]:
        if not self.data_dir.exists():  # a restart with fresh=False keeps the formatted data dir
            shutil.copytree(self._kafka_storage_template(), self.data_dir)
        props = self.dir / "server.properties"
        props.write_text(self._kafka_properties(self.data_dir))
        return java("kafka.Kafka", str(props), heap=KAFKA_HEAP, log4j=KAFKA_LOG4J_BROKER)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))
