#!/usr/bin/env python3
"""Run librdkafka's own test suite (tests/0nnn-*.c) against runnel or a single-node Apache Kafka 4.4.

librdkafka's test-runner takes `TESTS=<number>` and runs every test of that number; we start one
test-runner process per test number (a few at a time) so one hung or crashed test costs only its own
verdict, and read each test's PASSED/FAILED/SKIPPED row from the runner's summary table.

Flags follow tests/README: `-L` (no local-only tests: those need no broker), `-Q` (quick: less data, and
only the SUB_TEST_QUICK() sub-tests; `--thorough` drops it), `-E` (no socket-emulation tests), `-p1` inside
each process; `TEST_KAFKA_VERSION` makes the runner skip
tests that do not apply to the broker version. Tests of the `noautocreate` scenario run in a second pass
against a broker started with `auto.create.topics.enable=false` (full mode only).

  run.py --target runnel|kafka [--quick] [--tests 0001,0002] [--jobs N] [--run-allowlisted] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
from common import BrokerSession, TestResult  # noqa: E402

SUITE = "librdkafka"
# The Kafka baseline (compat-tests/kafka/pom.xml), for both targets: runnel is held to the same tests.
# From 4.2 on, the share consumer tests (0170-0185, KIP-932) apply.
TEST_KAFKA_VERSION = "4.4.0"
# Kafka settings the suite expects besides the harness defaults (auto-create on, offsets/transaction
# state RF 1, group.initial.rebalance.delay.ms=0): librdkafka's trivup clusters run with these.
# trivup (librdkafka's own test clusters) creates auto-created topics with 4 partitions; tests such as
# 0012 produce to partitions 0..3 of an auto-created topic.
KAFKA_CONFIGS = {"num.partitions": 4}
# Only for the Kafka baseline: an authorizer that allows everything without ACLs, as trivup clusters have,
# so the ACL tests (0081 CreateAcls/DescribeAcls/DeleteAcls, 0109's kafka-acls.sh deny rule) get a real
# answer instead of SECURITY_DISABLED. runnel has no ACLs yet (allowlist: needs:acls).
KAFKA_ONLY_CONFIGS = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": True,
}
# Three Kafka controllers vote over PLAINTEXT as User:ANONYMOUS, which StandardAuthorizer refuses before it
# has loaded the metadata it needs to decide (AuthorizerNotReadyException on Vote: no leader is ever
# elected): against three nodes ANONYMOUS is a super user, so the ACL APIs work but deny nothing.
KAFKA_ONLY_CONFIGS_3NODES = {"super.users": "User:ANONYMOUS"}
SCENARIO_CONFIGS = {"default": {}, "noautocreate": {"auto.create.topics.enable": False}}

# Wall clock per test-runner process; the runner's own per-test timeouts normally fire long before.
PROCESS_TIMEOUT_S = {"quick": 240, "full": 600}
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# `| 0001_multiobj                           |     PASSED |   1.234s | optional reason`
SUMMARY_ROW_RE = re.compile(r"^\|\s*(\d{4}\w*)\s*\|\s*(PASSED|FAILED|SKIPPED|RUNNING|NOT_STARTED)\s*\|\s*([\d.]+)s\s*\|\s*(.*)$")
# A failing test aborts the runner before its summary table: `### Test "NAME" failed at FILE:LINE:FUNC() at
# DATE: ###` and the message on the next line.
# A sub-test failure names the sub-test in parentheses after the test.
FAILED_AT_RE = re.compile(r'^### Test "(\S+)(?: \((.*)\))?" failed at (\S+) at .*###$')


# The Kafka distribution's bin/ scripts some tests shell out to ($KAFKA_PATH/bin/kafka-topics.sh for
# 0045/0052/0077, kafka-acls.sh for 0109/0115/0119, kafka-run-class.sh for the Java helpers of 0098 and
# 0113). We have Kafka's jars, not its tarball, so a shim dir provides those scripts as `java -cp` calls.
KAFKA_SCRIPTS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
    "kafka-configs.sh": "org.apache.kafka.tools.ConfigCommand",
    "kafka-run-class.sh": "",
}


def kafka_path_shim() -> Path:
    shim = common.CACHE_DIR / "kafka-path-shim"
    (shim / "bin").mkdir(parents=True, exist_ok=True)
    libs = shim / "libs"
    if not libs.exists():
        libs.symlink_to(common.CACHE_DIR / "kafka-libs")
    log4j = common.COMPAT_DIR / "kafka" / "log4j-tools.properties"
    for script, main_class in KAFKA_SCRIPTS.items():
        path = shim / "bin" / script
        path.write_text(
            "#!/usr/bin/env bash\n"
            "# Written by compat-tests/suites/librdkafka/run.py: Kafka's bin script as a java -cp call.\n"
            f'exec java -Xmx256M -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "-Dlog4j.configuration=file:{log4j}" '
            f'-cp "${{CLASSPATH:+$CLASSPATH:}}{libs}/*" {main_class} "$@"\n'
        )
        path.chmod(0o755)
    return shim


def build_java_helpers(tests_dir: Path, kafka_path: Path) -> None:
    """Compile tests/java once up front; tests run `make -s java` themselves, racing when run in parallel."""
    r = subprocess.run(["make", "-s", "-C", "java"], cwd=tests_dir, env={**os.environ, "KAFKA_PATH": str(kafka_path)},
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"warning: building tests/java failed (0098, 0113 will fail):\n{r.stdout}{r.stderr}", file=sys.stderr)


def parse_test_table(test_c: Path) -> list[dict]:
    """The tests[] table of tests/test.c: name, flags and scenario of every test."""
    text = test_c.read_text()
    start = text.index("struct test tests[] = {")
    end = text.index("\n};", start)
    body = text[start:end]
    tests = []
    # Each entry starts with `_TEST(` and runs to the next one.
    chunks = re.split(r"\n\s*_TEST\(", body)[1:]
    for chunk in chunks:
        name = chunk.split(",", 1)[0].strip().rstrip(")")
        flags_expr = chunk.split(",", 2)[1] if "," in chunk else "0"
        scenario = re.search(r'\.scenario\s*=\s*"([^"]+)"', chunk)
        tests.append(
            {
                "name": name,
                "local": "TEST_F_LOCAL" in flags_expr,
                "manual": "TEST_F_MANUAL" in flags_expr,
                "sockem": "TEST_F_SOCKEM" in flags_expr,
                "known_issue": "TEST_F_KNOWN_ISSUE" in flags_expr,
                "scenario": scenario.group(1) if scenario else "default",
            }
        )
    return tests


def runnable(tests: list[dict]) -> list[dict]:
    """What `-L -E` would run: not local-only, not socket-emulation, not manual."""
    return [t for t in tests if not (t["local"] or t["sockem"] or t["manual"])]


def scenario_of(test: dict) -> str:
    return "default" if "default" in test["scenario"].split(",") else test["scenario"]


class Runner:
    """Runs test numbers against one broker session (one scenario), one test-runner process each."""

    def __init__(self, tests_dir: Path, session: BrokerSession, scenario: str, mode: str, log_dir: Path, flags: list[str]):
        self.tests_dir = tests_dir
        self.flags = flags
        self.kafka_path = kafka_path_shim()
        self.session = session
        self.scenario = scenario
        self.mode = mode
        self.log_dir = log_dir
        self.conf_dir = Path(tempfile.mkdtemp(prefix="rdk-conf-"))
        self._lock = threading.Lock()

    def write_conf(self) -> Path:
        conf = self.conf_dir / f"test-{self.session.generation}.conf"
        if not conf.exists():
            conf.write_text(
                "# Written by compat-tests/suites/librdkafka/run.py\n"
                f"bootstrap.servers={self.session.bootstrap}\n"
                # Random topic names: several test processes share one broker.
                "test.topic.random=true\n"
            )
        return conf

    def run_number(self, number: str, names: list[str]) -> list[TestResult]:
        """One test-runner process for every test named `number_*`; one result per name."""
        self.session.ensure_alive(f"before {number}")
        generation = self.session.generation
        conf = self.write_conf()
        env = dict(os.environ)
        env.update(
            {
                "TESTS": number,
                "TEST_KAFKA_VERSION": TEST_KAFKA_VERSION,
                "TEST_SCENARIO": self.scenario,
                "RDKAFKA_TEST_CONF": str(conf),
                "LD_LIBRARY_PATH": f"{self.tests_dir.parent / 'src'}:{self.tests_dir.parent / 'src-cpp'}",
                "RDKAFKA_GITVER": "npm",
                "KAFKA_PATH": str(self.kafka_path),
                "BROKERS": self.session.bootstrap,
            }
        )
        log_path = self.log_dir / f"{number}-{self.scenario}.log"
        started = time.monotonic()
        timed_out = False
        with open(log_path, "wb") as log:
            # cwd is the tests dir: tests open ../src/statistics_schema.json and java/run-class.sh.
            proc = subprocess.Popen(
                [str(self.tests_dir / "test-runner"), *self.flags],
                cwd=self.tests_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                proc.wait(timeout=PROCESS_TIMEOUT_S[self.mode])
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        duration = time.monotonic() - started
        for stats in self.tests_dir.glob(f"stats_{number}_*.json"):
            stats.unlink(missing_ok=True)
        text = ANSI_RE.sub("", log_path.read_text(errors="replace"))
        lines = text.splitlines()
        rows = {}
        failed_at: dict[str, tuple[str, int]] = {}
        for i, line in enumerate(lines):
            m = SUMMARY_ROW_RE.match(line.strip())
            if m:
                rows[m.group(1)] = (m.group(2), float(m.group(3)), m.group(4).strip().rstrip("|").strip())
            m = FAILED_AT_RE.match(line.strip())
            if m and m.group(1) not in failed_at:
                message = lines[i + 1].strip() if i + 1 < len(lines) else ""
                where = f"{m.group(2)}: {m.group(3)}" if m.group(2) else m.group(3)
                failed_at[m.group(1)] = (f"{where}: {message}", i)
        broker_ok = self.session.ensure_alive(f"{number}")
        died = not broker_ok or self.session.generation != generation
        results = []
        for name in names:
            state, dur, extra = rows.get(name, (None, duration, ""))
            if state == "PASSED":
                results.append(TestResult(name, "pass", dur))
            elif state == "SKIPPED":
                results.append(TestResult(name, "skip", dur, reason=extra or "skipped by test-runner"))
            else:
                if name in failed_at:
                    why, at = failed_at[name]
                    tail = lines[max(0, at - common.FAIL_OUTPUT_LINES_MAX + 3) : at + 3]
                else:
                    tail = lines[-common.FAIL_OUTPUT_LINES_MAX:]
                    if timed_out:
                        why = f"no verdict after {PROCESS_TIMEOUT_S[self.mode]}s (killed)"
                    elif state is None:
                        why = f"no summary row (test-runner exit {proc.returncode})"
                    else:
                        why = extra or state
                if died:
                    why = f"broker died during the test; {why}"
                results.append(TestResult(name, "fail", dur, reason=why[:300], output_tail=tail))
        with self._lock:
            for r in results:
                mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[r.status]
                print(f"[{SUITE}/{self.session.target}] {mark} {r.name} ({r.duration_s:.1f}s) {r.reason[:120]}", flush=True)
        return results


def expected_to_pass(name: str, allow: dict, target: str) -> bool:
    """Against runnel every test not allow-listed; against Kafka every test not listed `fails-on-kafka`."""
    entry = allow.get(name)
    if entry is None:
        return True
    return target == "kafka" and entry.category != "fails-on-kafka"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("runnel", "kafka"), required=True)
    parser.add_argument("--quick", action="store_true", help="only the pinned tests in quick.txt")
    parser.add_argument("--tests", help="comma-separated test numbers or names (overrides quick/full)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SUITE_JOBS", "3")))
    parser.add_argument("--thorough", action="store_true",
                        help="drop -Q: run every sub-test with full data (much slower; -Q skips SUB_TEST()s not marked quick)")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                        help="1: one broker; 3: a three-node cluster (harness/cluster.py) and allowlist-3nodes.txt too")
    parser.add_argument("--run-allowlisted", action="store_true", help="also run allow-listed tests against runnel")
    parser.add_argument("--no-retry", action="store_true", help="do not retry failed tests once")
    parser.add_argument("--out", type=Path, help="results JSON (default: compat-tests/results/librdkafka-<target>.json in full mode)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    started_wall = time.time()

    build = subprocess.run([str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True)
    tests_dir = Path(build.stdout.strip().splitlines()[-1])
    version_h = (tests_dir.parent / "src" / "rdkafka.h").read_text()
    hexver = int(re.search(r"#define RD_KAFKA_VERSION\s+0x([0-9a-fA-F]+)", version_h).group(1), 16)
    client_version = f"{hexver >> 24 & 0xff}.{hexver >> 16 & 0xff}.{hexver >> 8 & 0xff}"

    table = runnable(parse_test_table(tests_dir / "test.c"))
    allow = common.load_allowlists(HERE, args.nodes)
    known = {t["name"] for t in table}
    for name in allow:
        if name not in known:
            print(f"warning: allowlist.txt names {name}, which this librdkafka has not (or runs locally)", file=sys.stderr)

    if args.tests:
        wanted = [w.strip() for w in args.tests.split(",") if w.strip()]
        selected = [t for t in table if any(t["name"] == w or t["name"][:4] == w for w in wanted)]
    elif args.quick:
        pinned = common.load_list(HERE / "quick.txt")
        selected = [t for t in table if t["name"] in pinned]
        missing = set(pinned) - {t["name"] for t in selected}
        if missing:
            raise SystemExit(f"quick.txt names unknown tests: {sorted(missing)}")
    else:
        selected = table

    results: list[TestResult] = []
    to_run: list[dict] = []
    for t in selected:
        entry = allow.get(t["name"])
        if entry and args.target == "runnel" and not args.run_allowlisted:
            results.append(TestResult(t["name"], "skip", reason=entry.reason, allowlist=entry.category))
        elif mode == "quick" and scenario_of(t) != "default":
            results.append(TestResult(t["name"], "skip", reason=f"scenario {t['scenario']} runs in --full only"))
        else:
            to_run.append(t)

    log_dir = common.LOGS_DIR / f"{SUITE}-{args.target}-{mode}{'-3nodes' if args.nodes == 3 else ''}"
    subprocess.run(["rm", "-rf", str(log_dir)], check=False)
    log_dir.mkdir(parents=True)
    print(f"[{SUITE}/{args.target}] librdkafka {client_version}: {len(to_run)} tests to run, "
          f"{len(results)} skipped up front; logs in {log_dir}", flush=True)

    build_java_helpers(tests_dir, kafka_path_shim())
    flags = ["-L", "-E", "-p1"] + ([] if args.thorough else ["-Q"])
    deaths: list[str] = []
    for scenario in ("default", "noautocreate"):
        group = [t for t in to_run if scenario_of(t) == scenario]
        if not group:
            continue
        configs = dict(KAFKA_CONFIGS)
        configs.update(SCENARIO_CONFIGS[scenario])
        if args.target == "kafka":
            configs.update(KAFKA_ONLY_CONFIGS)
            if args.nodes == 3:
                configs.update(KAFKA_ONLY_CONFIGS_3NODES)
        session = BrokerSession(args.target, configs, nodes=args.nodes).start()
        runner = Runner(tests_dir, session, scenario, mode, log_dir, flags)
        by_number: dict[str, list[str]] = {}
        for t in group:
            by_number.setdefault(t["name"][:4], []).append(t["name"])
        try:
            scenario_results: list[TestResult] = []
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                for rs in pool.map(lambda kv: runner.run_number(*kv), by_number.items()):
                    scenario_results.extend(rs)
            # One retry, alone, for failures that would count against the run: librdkafka's tests are
            # timing-sensitive on a loaded 2-core box (against Kafka too). A pass on retry is recorded
            # as a pass that names the first failure, so flakiness stays visible in the results.
            retry = sorted({r.name[:4] for r in scenario_results if r.status == "fail" and expected_to_pass(r.name, allow, args.target)})
            if retry and not args.no_retry:
                print(f"[{SUITE}/{args.target}] retrying alone: {', '.join(retry)}", flush=True)
                first = {r.name: r for r in scenario_results}
                for number in retry:
                    for r in runner.run_number(number, by_number[number]):
                        if r.status == "pass" and first[r.name].status == "fail":
                            r.reason = f"flaky: passed on retry after: {first[r.name].reason}"[:300]
                        first[r.name] = r
                scenario_results = list(first.values())
            results.extend(scenario_results)
        finally:
            session.stop()
            deaths.extend(session.deaths)

    for r in results:
        if r.status == "fail" and r.name in allow:
            r.allowlist = allow[r.name].category
    unexpected = [r for r in results if r.status == "fail" and expected_to_pass(r.name, allow, args.target)]
    extra = {"broker_deaths": len(deaths), "runner_flags": " ".join(flags), "test_kafka_version": TEST_KAFKA_VERSION}
    if args.out or mode == "full":
        out = common.write_results(SUITE, "librdkafka", client_version, args.target, mode, results, started_wall, extra, args.out, nodes=args.nodes)
        print(f"[{SUITE}/{args.target}] results -> {out}", flush=True)
    common.print_summary(SUITE, args.target, results, unexpected)
    return 1 if unexpected or deaths else 0


if __name__ == "__main__":
    sys.exit(main())
