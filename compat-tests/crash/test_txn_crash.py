"""Transactions across broker crashes: a crash at each step of a commit, and SIGKILLs at random moments.

* Fail points (runnel only: Kafka has none): runnel started with RUNNEL_FAILPOINTS=<point> kills itself
  (as SIGKILL would) at that step of its first transaction commit: after the PrepareCommit record,
  between the markers of two partitions, before the CompleteCommit record. The producer is killed
  too, so nothing but the restarted broker (without the fail point) can finish the transaction.
* Random SIGKILLs (both targets; Kafka's JVM gets kill -9): a transactional workload commits and
  aborts transactions over several partitions, each with a consume-transform-produce offset, while
  the broker is killed and restarted at seeded random moments (the seed is printed; set
  COMPAT_TXN_SEED to replay the schedule, COMPAT_TXN_KILLS for the number of kills). The producer runs
  in a child process (crash/txn_workload.py) that is replaced, with the same transactional id, when
  the client blocks for 2 minutes: librdkafka's send_offsets_to_transaction was seen blocking for
  minutes after a Kafka kill -9, until the coordinator's timeout abort fenced it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from helpers import create_topic, read_partitions

from broker import Broker, pid_alive, target_from_env

CRASH_DIR = Path(__file__).resolve().parent
FAIL_POINTS = ["txn.after_prepare", "txn.between_markers", "txn.before_complete"]
PARTITIONS = 4
PER_PARTITION = 25
INPUT_PARTITIONS = 2


@pytest.fixture
def crash_broker(request):
    """A broker this test starts itself (optionally with extra env), cleaned up afterwards."""
    brokers = []

    def start(env: dict | None = None) -> Broker:
        b = Broker(env=env)
        brokers.append(b)
        b.start()
        return b

    yield start
    for b in brokers:
        b.cleanup()


def values(stored: dict) -> dict[int, list[str]]:
    return {p: [m.value().decode() for m in msgs] for p, msgs in stored.items()}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as a read_committed consumer sees them (OffsetFetch with
    require_stable: it waits while a transactional offset is pending)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


@pytest.mark.parametrize("with_offsets", [False, True], ids=["records", "records+offsets"])
@pytest.mark.parametrize("fail_point", FAIL_POINTS)
def test_commit_completes_after_a_crash_at_a_fail_point(crash_broker, topic_name, fail_point, with_offsets):
    # Proves: a transaction whose commit was cut by a broker crash after PrepareCommit, between two partitions' markers, or before CompleteCommit is committed whole by the restarted broker on its own: every partition's records visible to read_committed exactly once, its offsets committed, and no partition ever half visible.
    if target_from_env() != "runnel":
        pytest.skip("fail points are runnel's (RUNNEL_FAILPOINTS); Kafka has none")
    broker = crash_broker({"RUNNEL_FAILPOINTS": fail_point})
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    group, inp = f"{topic_name}-group", f"{topic_name}-in"
    argv = [sys.executable, str(CRASH_DIR / "txn_commit.py"), broker.bootstrap, f"tid-{uuid.uuid4().hex[:8]}",
            topic_name, str(PARTITIONS), str(PER_PARTITION), "rec"]
    if with_offsets:
        create_topic(broker.bootstrap, inp, INPUT_PARTITIONS)
        argv += [group, inp, str(INPUT_PARTITIONS), "42"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while pid_alive(broker.pid):
            assert time.monotonic() < deadline, (
                f"runnel still runs 60 s into the commit: fail point {fail_point} never fired; producer: {lines}")
            assert proc.poll() is None or "FLUSHED" in "".join(lines), f"producer exited early: {lines}"
            time.sleep(0.05)
        assert any(line.startswith("FLUSHED") for line in lines), f"the broker died before the records were acked: {lines}"
    finally:
        proc.kill()  # nobody is left to retry the commit: the restarted broker must finish it
        proc.wait(timeout=30)
    print(f"{fail_point}: producer said {[line.strip() for line in lines]}")

    broker.env = {}
    broker.restart()
    want = {p: [f"rec-p{p}-{i}" for i in range(PER_PARTITION)] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 60
    while True:
        got = values(read_partitions(broker.bootstrap, topic_name, range(PARTITIONS),
                                     extra={"isolation.level": "read_committed"}))
        for p, vs in got.items():
            assert vs in ([], want[p]), f"partition {p} half visible to read_committed: {len(vs)} of {PER_PARTITION}"
        if got == want:
            break
        assert time.monotonic() < deadline, f"the transaction was not completed after the restart: {got}"
        time.sleep(0.5)
    everything = values(read_partitions(broker.bootstrap, topic_name, range(PARTITIONS),
                                        extra={"isolation.level": "read_uncommitted"}))
    assert everything == want, "read_uncommitted: each record once, nothing else"
    if with_offsets:
        assert committed_offsets(broker.bootstrap, group, inp, INPUT_PARTITIONS) == {
            p: 42 for p in range(INPUT_PARTITIONS)}


class Killer:
    """Kills the broker (SIGKILL) at seeded random moments and restarts it on the same data dir.

    Before each kill it waits until the workload has finished a random number (1-10) of transactions
    since the last restart, then a random 0-300 ms, so every kill lands while transactions run
    rather than while the client is still reconnecting from the previous one."""

    def __init__(self, broker: Broker, rng: random.Random, kills: int):
        self.broker, self.rng, self.kills = broker, rng, kills
        self.done = threading.Event()
        self.kill_times: list[float] = []
        self.error: BaseException | None = None
        self.completed = 0  # transactions the workload finished (any outcome); it increments this
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for _ in range(self.kills):
                target = self.completed + self.rng.randint(1, 10)
                deadline = time.monotonic() + 180
                while self.completed < target and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(self.rng.uniform(0.0, 0.3))
                self.kill_times.append(time.monotonic())
                self.broker.kill9()
                time.sleep(self.rng.uniform(0.0, 1.0))
                self.broker.restart()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.done.set()


class Workload:
    """crash/txn_workload.py as a child process: one transaction per call, killed and replaced (same
    transactional id, which fences the old producer) when the client blocks past STEP_TIMEOUT_S."""

    STEP_TIMEOUT_S = 120.0

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.replaced = 0

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines = queue.Queue()
        lines, stdout = self.lines, self.proc.stdout
        threading.Thread(target=lambda: ([lines.put(l.rstrip("\n")) for l in stdout], lines.put(None)),
                         daemon=True).start()

    def _next(self, timeout_s: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
            self.replaced += 1

    def run(self, n: int, commit: bool, sent: dict[int, list[str]]) -> tuple[str, bool, int | str | None, str]:
        """-> (outcome, confirmed, the group's offset after it or None, note)."""
        if self.proc is None or self.proc.poll() is not None:
            self._spawn()
            line = self._next(self.STEP_TIMEOUT_S)
            if line != "READY":
                self._kill()
                return "aborted", False, None, f"workload process not ready: {line}"
        self.proc.stdin.write(f"TXN {n} {'commit' if commit else 'abort'} {json.dumps(sent)}\n")
        self.proc.stdin.flush()
        committing = False
        while True:
            line = self._next(self.STEP_TIMEOUT_S)
            if line is None:  # blocked past any client timeout, or exited: replace it
                self._kill()
                return ("unknown" if committing else "aborted"), False, None, "client blocked or died; replaced"
            if line == f"COMMITTING {n}":
                committing = True
            elif line.startswith(f"DONE {n} "):
                _, _, outcome, confirmed, note = line.split(" ", 4)
                break
        offset: int | str | None = None
        if confirmed == "1":
            line = self._next(self.STEP_TIMEOUT_S)
            if line is None or not line.startswith(f"OFFSET {n} "):
                self._kill()
                offset = "skipped"
            else:
                value = line.split(" ")[2]
                offset = "skipped" if value == "skipped" else int(value)
        return outcome, confirmed == "1", offset, note

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_random_sigkills_during_a_transactional_workload(crash_broker, topic_name):
    # Proves: across SIGKILLs at random moments, read_committed never shows a record of an aborted (or never committed) transaction, shows every record of each transaction whose commit was acknowledged, and shows each transaction whole or not at all; the group's transactional offset is the committed transaction's right after each acknowledged commit, never an aborted one's, and at the end that of the last visible transaction.
    seed = int(os.environ.get("COMPAT_TXN_SEED", random.SystemRandom().randrange(1 << 32)))
    kills = int(os.environ.get("COMPAT_TXN_KILLS", "3"))
    print(f"COMPAT_TXN_SEED={seed} COMPAT_TXN_KILLS={kills}")
    rng = random.Random(seed)
    broker = crash_broker()
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    inp, group, tid = f"{topic_name}-in", f"{topic_name}-group", f"tid-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, inp, 1)
    workload = Workload([sys.executable, str(CRASH_DIR / "txn_workload.py"), broker.bootstrap, tid, topic_name, inp,
                         group])

    # txn number -> (partition -> values, outcome) ; outcome: committed | aborted | unknown
    txns: dict[int, tuple[dict[int, list[str]], str]] = {}
    offset_checks = {"after_commit": 0, "after_abort": 0, "skipped": 0}
    killer = Killer(broker, random.Random(rng.random()), kills)
    killer.thread.start()
    n = 0
    commits_after_last_restart = 0
    deadline = time.monotonic() + 900
    try:
        while not (killer.done.is_set() and commits_after_last_restart >= 3) and killer.error is None:
            assert time.monotonic() < deadline, (
                f"seed {seed}: workload still running after 900 s, {len(killer.kill_times)} kills done; "
                f"broker log tail:\n{broker.log_tail(30)}")
            n += 1
            began = time.monotonic()
            parts = rng.sample(range(PARTITIONS), rng.randint(2, PARTITIONS))
            sent = {p: [f"t{n}-p{p}-{i}" for i in range(rng.randint(1, 20))] for p in parts}
            outcome, confirmed, offset, note = workload.run(n, rng.random() < 0.75, sent)
            txns[n] = (sent, outcome)
            killer.completed = n
            print(f"txn {n}: {outcome}{' (confirmed)' if confirmed else ''} in {time.monotonic() - began:.1f} s,"
                  f" {len(killer.kill_times)} kills so far, group offset after it {offset}; {note}", flush=True)
            if outcome == "committed" and killer.done.is_set():
                commits_after_last_restart += 1
            assert n < 30 or any(o == "committed" for _, o in txns.values()), (
                f"seed {seed}: no transaction committed in {n} attempts; last: {outcome}: {note}")
            if confirmed:
                if offset in (None, "skipped"):
                    offset_checks["skipped"] += 1
                elif outcome == "committed":
                    assert offset == n, f"seed {seed}: txn {n} committed, the group's offset is {offset}"
                    offset_checks["after_commit"] += 1
                else:
                    assert offset != n, f"seed {seed}: txn {n} aborted, yet the group's offset is its {n}"
                    offset_checks["after_abort"] += 1
    finally:
        workload.close()
        killer.done.wait(timeout=300)
    assert killer.error is None, f"killer failed: {killer.error!r}\n{broker.log_tail()}"
    assert len(killer.kill_times) == kills

    rc = values(read_partitions(broker.bootstrap, topic_name, range(PARTITIONS),
                                extra={"isolation.level": "read_committed"}))
    seen: dict[str, int] = {}
    for vs in rc.values():
        for v in vs:
            seen[v] = seen.get(v, 0) + 1
    duplicates = {v: c for v, c in seen.items() if c > 1}
    assert not duplicates, f"read_committed shows records more than once: {list(duplicates)[:10]}"
    visible_txns = []
    for number, (sent, outcome) in sorted(txns.items()):
        records = [v for vs in sent.values() for v in vs]
        shown = [v for v in records if v in seen]
        if outcome == "committed":
            assert len(shown) == len(records), f"txn {number} committed, read_committed misses {len(records) - len(shown)}"
        elif outcome == "aborted":
            assert not shown, f"txn {number} aborted, read_committed shows {shown[:5]}"
        else:
            assert len(shown) in (0, len(records)), f"txn {number} partially visible: {len(shown)} of {len(records)}"
        if shown:
            visible_txns.append(number)
        for p, vs in sent.items():  # within a partition a visible transaction is in produce order
            if shown:
                positions = [rc[p].index(v) for v in vs]
                assert positions == sorted(positions), f"txn {number} out of order on partition {p}"
    stray = set(seen) - {v for sent, _ in txns.values() for vs in sent.values() for v in vs}
    assert not stray, f"read_committed shows records nobody sent: {sorted(stray)[:5]}"
    final = committed_offsets(broker.bootstrap, group, inp, 1)[0]
    assert final == (max(visible_txns) if visible_txns else -1001), (
        f"group offset {final}, last visible transaction {max(visible_txns, default=None)}")
    outcomes = {o: sum(1 for _, oo in txns.values() if oo == o) for o in ("committed", "aborted", "unknown")}
    print(f"seed {seed}: {n} transactions {outcomes}, {kills} SIGKILLs, offset checks {offset_checks}")
    assert outcomes["committed"] >= 3 and offset_checks["after_commit"] >= 1
