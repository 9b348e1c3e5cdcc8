#!/usr/bin/env python3
"""Run franz-go's pkg/kgo tests (the module's own _test.go files) against runnel or single-node Kafka 4.4.

The compiled test binary runs under `go tool test2json`, so every top-level test gets a verdict; a
subtest failure fails its parent. The tests read the broker from KGO_SEEDS, create topics with
KGO_TEST_RF replicas (1: one broker) and produce KGO_TEST_RECORDS records in their big produce/consume
chains (small here, so a run takes minutes, not hours).

If the binary dies (panic, -test.timeout), the tests it was running fail and the tests it never reached
are run again in a new process, at most RESTARTS_MAX times.

Some kgo tests are pure unit tests (no broker); results mark each test `needs_broker` from a static
look at the _test.go sources (does it, or a helper it calls, create a client) so the matrix can count
them apart.

  run.py --target runnel|kafka [--quick] [--tests TestA,TestB] [--run-allowlisted] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
from common import BrokerSession, TestResult  # noqa: E402

SUITE = "franz-go"
# franz-go's CI brokers: auto-create on, group.initial.rebalance.delay.ms=0 (harness defaults).
KAFKA_CONFIGS: dict = {}
RECORDS = {"quick": 2000, "full": 5000}
BINARY_TIMEOUT = {"quick": "6m", "full": "12m"}
# Wall clock for one binary run: its own -test.timeout plus time to dump goroutines and exit.
WALL_TIMEOUT_S = {"quick": 420, "full": 780}
RESTARTS_MAX = 3
# A test needs a broker if its body (or a helper it calls) does any of these.
BROKER_MARKERS = re.compile(r"\b(newTestClient|adm\(\)|tmpTopic\w*\(|tmpGroup\(|getSeedBrokers\(|testClientOpts\(|scramSeeds|oauthSeeds)")
# Progress lines the kgo helpers print in passing and failing tests alike.
NOISE_RE = re.compile(r"completed in|deleting (group|topic)|NOT DELETING|--- FAIL")
FUNC_RE = re.compile(r"^func (?:\([^)]*\) )?(\w+)\(", re.M)


def broker_tests(kgo_dir: Path) -> set[str]:
    """Functions in *_test.go that reach a real client, directly or through helpers (a fixpoint)."""
    bodies: dict[str, str] = {}
    for path in sorted(kgo_dir.glob("*_test.go")):
        text = path.read_text()
        starts = [(m.start(), m.group(1)) for m in FUNC_RE.finditer(text)]
        for i, (pos, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            bodies[name] = bodies.get(name, "") + text[pos:end]
    # init() reads the KGO_* environment (and so mentions scramSeeds) but is no helper a test calls;
    # a call like `m.init(cl)` must not mark a test.
    bodies.pop("init", None)
    uses = {name for name, body in bodies.items() if BROKER_MARKERS.search(body)}
    calls = {name: set(re.findall(r"\b(\w+)\(", body)) & set(bodies) for name, body in bodies.items()}
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            if name not in uses and callees & uses:
                uses.add(name)
                changed = True
    return {n for n in uses if n.startswith("Test")}


def run_binary(binary: Path, kgo_dir: Path, names: list[str], skip: list[str], env: dict, mode: str, log) -> dict:
    """One test-binary run; returns {test: {"action", "elapsed", "output"}} for top-level tests seen."""
    argv = ["go", "tool", "test2json", "-t", "-p", "kgo", str(binary), "-test.v", "-test.timeout", BINARY_TIMEOUT[mode],
            "-test.run", "^(" + "|".join(map(re.escape, names)) + ")$"]
    if skip:
        argv += ["-test.skip", "^(" + "|".join(map(re.escape, skip)) + ")$"]
    seen: dict[str, dict] = {}
    proc = subprocess.Popen(argv, cwd=kgo_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + WALL_TIMEOUT_S[mode]
    for line in proc.stdout:
        log.write(line)
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        test = event.get("Test")
        if not test:
            continue
        top = test.split("/", 1)[0]
        rec = seen.setdefault(top, {"action": "run", "elapsed": 0.0, "output": [], "failed_sub": [], "by_test": {}})
        if event["Action"] == "output":
            line = event.get("Output", "").rstrip("\n")
            rec["output"].append(line)
            del rec["output"][:-200]
            own = rec["by_test"].setdefault(test, [])
            own.append(line)
            del own[:-50]
        elif event["Action"] in ("pass", "fail", "skip"):
            if test == top:
                rec["action"] = event["Action"]
                rec["elapsed"] = event.get("Elapsed", 0.0)
            elif event["Action"] == "fail":
                rec["failed_sub"].append(test)
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 9)
            break
    proc.wait()
    return seen


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
    parser.add_argument("--tests", help="comma-separated test names (overrides quick/full)")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                        help="1: one broker; 3: a three-node cluster (harness/cluster.py) and allowlist-3nodes.txt too")
    parser.add_argument("--run-allowlisted", action="store_true", help="also run allow-listed tests against runnel")
    parser.add_argument("--no-retry", action="store_true", help="do not retry failed tests once")
    parser.add_argument("--out", type=Path, help="results JSON (default: compat-tests/results/franz-go-<target>.json in full mode)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    started_wall = time.time()

    build = subprocess.run([str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True)
    kgo_dir = Path(build.stdout.strip().splitlines()[-1])
    module_dir = kgo_dir.parent.parent
    binary = module_dir / "kgo.test"
    client_version = module_dir.name.removeprefix("franz-go-")

    listed = subprocess.run([str(binary), "-test.list", "^Test"], cwd=kgo_dir, check=True, capture_output=True, text=True)
    all_tests = [l for l in listed.stdout.split() if l.startswith("Test")]
    needs_broker = broker_tests(kgo_dir)
    allow = common.load_allowlists(HERE, args.nodes)
    for name in allow:
        if name not in all_tests:
            print(f"warning: allowlist.txt names {name}, which franz-go {client_version} has not", file=sys.stderr)

    if args.tests:
        wanted = {w.strip() for w in args.tests.split(",") if w.strip()}
        selected = [t for t in all_tests if t in wanted]
    elif args.quick:
        pinned = common.load_list(HERE / "quick.txt")
        missing = set(pinned) - set(all_tests)
        if missing:
            raise SystemExit(f"quick.txt names unknown tests: {sorted(missing)}")
        selected = [t for t in all_tests if t in pinned]
    else:
        selected = all_tests

    results: dict[str, TestResult] = {}
    to_run = []
    for name in selected:
        entry = allow.get(name)
        if entry and args.target == "runnel" and not args.run_allowlisted:
            results[name] = TestResult(name, "skip", reason=entry.reason, allowlist=entry.category)
        else:
            to_run.append(name)

    log_dir = common.LOGS_DIR / f"{SUITE}-{args.target}-{mode}{'-3nodes' if args.nodes == 3 else ''}"
    subprocess.run(["rm", "-rf", str(log_dir)], check=False)
    log_dir.mkdir(parents=True)
    print(f"[{SUITE}/{args.target}] franz-go {client_version}: {len(to_run)} tests to run, {len(results)} skipped up front; "
          f"logs in {log_dir}", flush=True)

    session = BrokerSession(args.target, KAFKA_CONFIGS, nodes=args.nodes).start()
    try:
        remaining = list(to_run)
        for attempt in range(1, RESTARTS_MAX + 1):
            if not remaining:
                break
            session.ensure_alive(f"binary run {attempt - 1}")
            generation = session.generation
            env = dict(os.environ)
            env.update({"KGO_SEEDS": session.bootstrap, "KGO_TEST_RF": "1", "KGO_TEST_RECORDS": str(RECORDS[mode]),
                        "KGO_LOG_LEVEL": os.environ.get("KGO_LOG_LEVEL", "none")})
            with open(log_dir / f"run-{attempt}.jsonl", "w") as log:
                seen = run_binary(binary, kgo_dir, remaining, [], env, mode, log)
            died = not session.ensure_alive(f"binary run {attempt}") or session.generation != generation
            for name, rec in seen.items():
                if name not in remaining:
                    continue
                action = rec["action"]
                dur = rec["elapsed"] or 0.0
                if action == "pass":
                    results[name] = TestResult(name, "pass", dur)
                elif action == "skip":
                    why = next((l.strip() for l in reversed(rec["output"]) if l.strip() and not l.lstrip().startswith(("---", "==="))), "skipped")
                    results[name] = TestResult(name, "skip", dur, reason=why[:200])
                else:
                    # The failing (sub)tests' own lines, without the helpers' progress chatter.
                    failing = rec["failed_sub"][::-1] + [name]
                    errs = [l for t in failing for l in rec["by_test"].get(t, [])
                            if not l.lstrip().startswith(("=== ", "--- PASS", "--- SKIP"))
                            and not NOISE_RE.search(l)]
                    first = next((l.strip() for l in errs if re.search(r"_test\.go:\d+:", l)), "")
                    why = first or ("no verdict: the test binary exited while it ran" if action == "run" else "failed")
                    if rec["failed_sub"]:
                        why = f"subtests {', '.join(s.split('/', 1)[1] for s in rec['failed_sub'][:4])}: {why}"
                    if died:
                        why = f"broker died during the run; {why}"
                    results[name] = TestResult(name, "fail", dur, reason=why[:300], output_tail=errs[-common.FAIL_OUTPUT_LINES_MAX:])
                r = results[name]
                mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[r.status]
                print(f"[{SUITE}/{args.target}] {mark} {name} ({r.duration_s:.1f}s) {r.reason[:120]}", flush=True)
            remaining = [n for n in remaining if n not in results]
            if remaining:
                print(f"[{SUITE}/{args.target}] binary exited before {len(remaining)} tests; running them again", flush=True)
        for name in remaining:
            results[name] = TestResult(name, "fail", reason=f"never ran: the test binary died {RESTARTS_MAX} times")
        # One retry for failures that count against the run (group tests are timing-sensitive on a loaded
        # 2-core box, against Kafka too); a pass on retry stays visible as "flaky: ..." in the results.
        retry = [n for n, r in results.items() if r.status == "fail" and expected_to_pass(n, allow, args.target)]
        if retry and not args.no_retry:
            print(f"[{SUITE}/{args.target}] retrying: {', '.join(retry)}", flush=True)
            session.ensure_alive("retry")
            env["KGO_SEEDS"] = session.bootstrap
            with open(log_dir / "retry.jsonl", "w") as log:
                seen = run_binary(binary, kgo_dir, retry, [], env, mode, log)
            for name in retry:
                rec = seen.get(name)
                if rec and rec["action"] == "pass":
                    results[name] = TestResult(name, "pass", rec["elapsed"] or 0.0,
                                               reason=f"flaky: passed on retry after: {results[name].reason}"[:300])
                    print(f"[{SUITE}/{args.target}] ok   {name} on retry", flush=True)
    finally:
        session.stop()

    for r in results.values():
        if r.name in allow and r.status == "fail":
            r.allowlist = allow[r.name].category
    unexpected = [r for r in results.values() if r.status == "fail" and expected_to_pass(r.name, allow, args.target)]
    # needs_broker goes into the results file so the matrix can set unit tests apart.
    ordered = sorted(results.values(), key=lambda r: r.name)
    out_extra = {"broker_deaths": len(session.deaths),
                 "needs_broker": sorted(n for n in selected if n in needs_broker)}
    if args.out or mode == "full":
        out = common.write_results(SUITE, "franz-go", client_version, args.target, mode, ordered, started_wall, out_extra, args.out, nodes=args.nodes)
        print(f"[{SUITE}/{args.target}] results -> {out}", flush=True)
    common.print_summary(SUITE, args.target, ordered, unexpected)
    return 1 if unexpected or session.deaths else 0


if __name__ == "__main__":
    sys.exit(main())
