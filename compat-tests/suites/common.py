"""Shared plumbing for the client test suites (librdkafka, franz-go): broker, allow-list, results file.

The suites are the clients' own regression tests, run unchanged against one broker: runnel, or a real
single-node Apache Kafka 4.4 as the baseline. Each suite's run.py decides which tests to run and how to
read their verdicts; this module owns what is the same for every suite:

* `BrokerSession` starts the target through compat-tests/harness/broker.py and restarts it if it dies
  mid-suite, so one crash shows up as the failures it caused, not as every later test failing;
* `load_allowlist` reads `<suite>/allowlist.txt`: the tests that are not run against runnel, each with a
  category (`fails-on-kafka` or `needs:<feature>`) and a reason;
* `write_results` writes compat-tests/results/<suite>-<target>.json, which compat-tests/matrix.py reads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent
COMPAT_DIR = SUITES_DIR.parent
REPO_DIR = COMPAT_DIR.parent
CACHE_DIR = COMPAT_DIR / ".cache"
RESULTS_DIR = COMPAT_DIR / "results"
LOGS_DIR = CACHE_DIR / "suite-logs"

sys.path.insert(0, str(COMPAT_DIR / "harness"))

from broker import Broker, kafka_version  # noqa: E402
from cluster import Cluster  # noqa: E402

# Allow-list categories. `needs:<feature>` names a broker feature runnel has not built yet, so the list
# shrinks as features land; `fails-on-kafka` is a test that also fails against single-node Kafka 4.4.
ALLOW_CATEGORY_RE = re.compile(r"^(fails-on-kafka|needs:[a-z0-9][a-z0-9-]*)$")

# Lines of a failing test's output kept in the committed results file: enough to see the assertion.
FAIL_OUTPUT_LINES_MAX = 15

STATUSES = ("pass", "fail", "skip")


@dataclass
class AllowEntry:
    """One allow-listed test: why it is not run against runnel."""

    test: str
    category: str
    reason: str


def load_allowlist(path: Path) -> dict[str, AllowEntry]:
    """Parse `<test> <category> <reason...>` lines; a line starting with `#` is a comment. Malformed lines are fatal."""
    entries: dict[str, AllowEntry] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise SystemExit(f"{path}:{lineno}: expected '<test> <category> <reason>', got {raw!r}")
        test, category, reason = parts
        if not ALLOW_CATEGORY_RE.match(category):
            raise SystemExit(f"{path}:{lineno}: category must be fails-on-kafka or needs:<feature>, got {category!r}")
        if test in entries:
            raise SystemExit(f"{path}:{lineno}: {test} listed twice")
        entries[test] = AllowEntry(test, category, reason.strip())
    return entries


def load_allowlists(suite_dir: Path, nodes: int) -> dict[str, AllowEntry]:
    """The suite's allow-list; against three nodes also `allowlist-3nodes.txt` (its lines win): tests that
    pass against a three-node Kafka only because it replicates (replication factor 3 topics), which runnel
    refuses until "Cluster II", and tests that fail against a three-node Kafka."""
    entries = load_allowlist(suite_dir / "allowlist.txt")
    if nodes == 3:
        entries.update(load_allowlist(suite_dir / "allowlist-3nodes.txt"))
    return entries


def results_name(suite: str, target: str, nodes: int) -> str:
    """compat-tests/results/<suite>-<target>.json, with `-3nodes` for runs against three nodes."""
    return f"{suite}-{target}{'-3nodes' if nodes == 3 else ''}.json"


def load_list(path: Path) -> list[str]:
    """A plain list file: one test name per line, `#` comments."""
    names = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


@dataclass
class TestResult:
    """One test's verdict as it goes into the results file."""

    name: str
    status: str  # pass | fail | skip
    duration_s: float = 0.0
    # For skip: why (allow-listed, not applicable to this broker version, ...); for fail: the first error.
    reason: str = ""
    # The allow-list category when the test was skipped (or run anyway) because it is listed.
    allowlist: str = ""
    output_tail: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"name": self.name, "status": self.status, "duration_s": round(self.duration_s, 3)}
        if self.reason:
            out["reason"] = repo_relative(self.reason)
        if self.allowlist:
            out["allowlist"] = self.allowlist
        if self.status == "fail" and self.output_tail:
            out["output_tail"] = [repo_relative(l) for l in self.output_tail[-FAIL_OUTPUT_LINES_MAX:]]
        return out


def repo_relative(text: str) -> str:
    """Committed results must not depend on where the checkout lives."""
    return text.replace(str(REPO_DIR) + "/", "")


def target_version(target: str) -> str:
    if target == "kafka":
        return kafka_version()
    # crates/broker takes its version from the workspace ([workspace.package] in the root Cargo.toml).
    for cargo in (REPO_DIR / "crates" / "broker" / "Cargo.toml", REPO_DIR / "Cargo.toml"):
        match = re.search(r'^version\s*=\s*"([^"]+)"', cargo.read_text(), re.M) if cargo.exists() else None
        if match:
            return match.group(1)
    return "dev"


def binary_fingerprint() -> str:
    """Which runnel build a results file describes: the binary changes under a shared checkout."""
    import hashlib

    path = Path(os.environ.get("RUNNEL_BIN") or REPO_DIR / "target" / "release" / "runnel")
    if not path.exists():
        return ""
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]} built {mtime}"


class BrokerSession:
    """The broker (or, with nodes=3, the three-node cluster of harness/cluster.py) a suite runs against;
    restarted (fresh data dirs) if it, or any node of it, dies between tests.

    `generation` counts (re)starts so a runner can tell that a test overlapped a broker death.
    """

    def __init__(self, target: str, configs: dict | None = None, nodes: int = 1):
        self.target = target
        self.configs = dict(configs or {})
        self.nodes = nodes
        self.broker: Broker | Cluster | None = None
        self.generation = 0
        self.deaths: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> "BrokerSession":
        started = time.monotonic()
        if self.nodes == 1:
            self.broker = Broker(target=self.target, configs=self.configs).start()
            where = f"log {self.broker.log_path}"
        else:
            self.broker = Cluster(target=self.target, nodes=self.nodes, configs=self.configs).start()
            where = f"{self.nodes} nodes, logs under {self.broker.root_dir}"
        self.generation += 1
        print(
            f"[{self.target}] broker up at {self.broker.bootstrap} in {time.monotonic() - started:.1f}s ({where})",
            flush=True,
        )
        return self

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def alive(self) -> bool:
        if isinstance(self.broker, Cluster):
            return all(n.alive() for n in self.broker.nodes)
        return self.broker is not None and self.broker.proc is not None and self.broker.proc.poll() is None

    def ensure_alive(self, context: str) -> bool:
        """Restart a dead broker. Returns False (and records the death) when it had died."""
        with self._lock:
            if self.alive():
                return True
            if isinstance(self.broker, Cluster):
                tail = self.broker.log_tails(30)
                self.broker.stop()
            else:
                tail = self.broker.log_tail(30) if self.broker else ""
            note = f"broker died (noticed after {context}); log tail:\n{tail}"
            self.deaths.append(note)
            print(f"[{self.target}] !!! {note}", flush=True)
            keep = self._keep_dir()
            self.start()
            del keep
            return False

    def _keep_dir(self):
        """Keep a dead broker's dir for the post-mortem: move it under .cache/suite-logs."""
        if self.broker and self.broker.root_dir and self.broker.root_dir.exists():
            LOGS_DIR.mkdir(parents=True, exist_ok=True)
            dest = LOGS_DIR / f"dead-{self.target}-{int(time.time())}"
            shutil.move(str(self.broker.root_dir), dest)
            print(f"[{self.target}] dead broker's files kept in {dest}", flush=True)
        return None

    def stop(self) -> None:
        if self.broker:
            self.broker.cleanup()


def write_results(
    suite: str,
    client: str,
    client_version: str,
    target: str,
    mode: str,
    results: list[TestResult],
    started: float,
    extra: dict | None = None,
    out_path: Path | None = None,
    nodes: int = 1,
) -> Path:
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    doc = {
        "suite": suite,
        "client": client,
        "client_version": client_version,
        "target": target,
        "target_version": target_version(target),
        "mode": mode,
        "nodes": nodes,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "duration_s": round(time.time() - started, 1),
        "counts": counts,
        "tests": [r.to_json() for r in sorted(results, key=lambda r: r.name)],
    }
    if target == "runnel":
        doc["runnel_binary"] = binary_fingerprint()
    if extra:
        doc.update(extra)
    out = out_path or RESULTS_DIR / results_name(suite, target, nodes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def print_summary(suite: str, target: str, results: list[TestResult], unexpected: list[TestResult]) -> None:
    """Print the failures that count, then the closing line CI reads.

    Failures the allow-list expects (a `fails-on-kafka` test against Kafka, or an allow-listed test run
    anyway with --run-allowlisted) are reported on their own line and not counted as failed.
    """
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    expected = counts["fail"] - len(unexpected)
    if unexpected:
        print(f"\n[{suite}/{target}] UNEXPECTED failures (not allow-listed):", flush=True)
        for r in unexpected:
            print(f"  {r.name}: {r.reason}", flush=True)
    if expected:
        print(f"[{suite}/{target}] {expected} expected failures (allow-listed; see the results file)", flush=True)
    print(f"{suite}-{target}: {counts['pass']} passed, {len(unexpected)} failed, {counts['skip']} skipped", flush=True)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
