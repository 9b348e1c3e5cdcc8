#!/usr/bin/env bash
# Run the real-client compat suite against runnel (default) or Apache Kafka 4.4.
#
#   compat-tests/run.sh [--target runnel|kafka] [--nodes 1|3] [ARGS...]
#
# Every test starts its own broker (harness/broker.py). With --nodes 3 only the 3-node tests run
# (multinode/ and kafkajs/cluster.test.js by default, COMPAT_NODES=3): run.sh starts one three-node cluster
# of the target (harness/cluster.py) that those tests share (COMPAT_CLUSTER_FILE), and tests that kill
# nodes start clusters of their own. When only pytest runs, its `cluster` fixture starts the shared cluster
# at the first test that uses it instead (so a run of tests with clusters of their own starts no idle one).
# ARGS select and tune:
#   paths under kafkajs/ or console/, or ending in .js -> node --test only gets those files
#   other paths (librdkafka/, java/test_kafka_cli.py::test_x, ...) -> pytest only gets those
#   (with no paths at all, both runners run everything; with paths for one runner only, the other is skipped)
#   --test-name-pattern=RE                 -> node
#   any other option (-k EXPR, -x, -v ...) -> pytest
# Prints each runner's own summary, then one closing line "compat: N passed, N failed".
# Exits non-zero if any test failed or a runner found nothing to run.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

target="${COMPAT_TARGET:-runnel}"
nodes="${COMPAT_NODES:-1}"
pytest_opts=()
pytest_paths=()
node_opts=()
node_paths=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        --nodes) nodes="$2"; shift 2 ;;
        --nodes=*) nodes="${1#*=}"; shift ;;
        --test-name-pattern=*) node_opts+=("$1"); shift ;;
        -k|-m|--maxfail|--durations) pytest_opts+=("$1" "$2"); shift 2 ;;
        -*) pytest_opts+=("$1"); shift ;;
        *.js|kafkajs|kafkajs/*|console|console/*) node_paths+=("$1"); shift ;;
        *) pytest_paths+=("$1"); shift ;;
    esac
done
case "$target" in runnel|kafka) ;; *) echo "run.sh: --target must be runnel or kafka, got '$target'" >&2; exit 2 ;; esac
export COMPAT_TARGET="$target"
case "$nodes" in 1|3) ;; *) echo "run.sh: --nodes must be 1 or 3, got '$nodes'" >&2; exit 2 ;; esac
export COMPAT_NODES="$nodes"
if [[ "$nodes" == 3 && ${#pytest_paths[@]} -eq 0 && ${#node_paths[@]} -eq 0 ]]; then
    pytest_paths=(multinode/)
    node_paths=(kafkajs/cluster.test.js)
fi

run_pytest=1
run_node=1
if [[ ${#pytest_paths[@]} -gt 0 && ${#node_paths[@]} -eq 0 ]]; then run_node=0; fi
if [[ ${#node_paths[@]} -gt 0 && ${#pytest_paths[@]} -eq 0 ]]; then run_pytest=0; fi
[[ ${#node_paths[@]} -gt 0 ]] || node_paths=(kafkajs/ console/)

./setup.sh || { echo "run.sh: setup.sh failed" >&2; exit 1; }
export COMPAT_PYTHON="$HERE/.cache/venv/bin/python"
results="$HERE/.cache/results"
rm -rf "$results"
mkdir -p "$results"

if [[ "$target" == runnel ]]; then
    bin="${RUNNEL_BIN:-$HERE/../target/release/runnel}"
    [[ -x "$bin" ]] || { echo "run.sh: no runnel binary at $bin (cargo build --release -p runnel-broker, or set RUNNEL_BIN)" >&2; exit 1; }
fi

echo "== compat suite against $target ($nodes node$([[ $nodes == 1 ]] || echo s)) =="
pytest_rc=0
node_rc=0
start_s=$SECONDS

if [[ "$nodes" == 3 && $run_node -eq 1 ]]; then
    # One cluster for every 3-node test of this run (pytest and node alike) that leaves its nodes running.
    export COMPAT_CLUSTER_FILE="$results/cluster.json"
    echo "-- starting a 3-node $target cluster (harness/cluster.py) --"
    "$COMPAT_PYTHON" harness/cluster.py start --target "$target" --out "$COMPAT_CLUSTER_FILE" >/dev/null \
        || { echo "run.sh: the 3-node $target cluster did not start"; echo "compat: 0 passed, 1 failed"; exit 1; }
    trap '"$COMPAT_PYTHON" harness/cluster.py stop --file "$COMPAT_CLUSTER_FILE"' EXIT
    echo "(cluster up after $((SECONDS - start_s))s: $("$COMPAT_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bootstrap"])' "$COMPAT_CLUSTER_FILE"))"
fi

if [[ $run_pytest -eq 1 ]]; then
    echo "-- pytest (librdkafka, java CLI, crash) --"
    "$COMPAT_PYTHON" -m pytest --junitxml="$results/pytest.xml" "${pytest_opts[@]}" "${pytest_paths[@]}"
    pytest_rc=$?
fi

if [[ $run_node -eq 1 ]]; then
    echo "-- node --test (kafkajs, console) --"
    # spec for people, tap to a file for the counts below.
    node --test --test-concurrency=1 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$results/node.tap" \
        "${node_opts[@]}" "${node_paths[@]}"
    node_rc=$?
fi

# One closing line over both runners.
"$COMPAT_PYTHON" - "$results" "$run_pytest" "$run_node" "$pytest_rc" "$node_rc" "$((SECONDS - start_s))" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
from pathlib import Path
results, run_pytest, run_node, pytest_rc, node_rc, elapsed = sys.argv[1:]
passed = failed = skipped = 0
problems = []
if run_pytest == "1":
    xml = Path(results, "pytest.xml")
    if xml.exists():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        failed += f + e
        skipped += s
        passed += total - f - e - s
        if total == 0:
            problems.append("pytest ran no test")
    else:
        problems.append("pytest wrote no results")
    if pytest_rc != "0" and not problems and failed == 0:
        problems.append(f"pytest exited {pytest_rc}")
if run_node == "1":
    tap = Path(results, "node.tap")
    text = tap.read_text() if tap.exists() else ""
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|cancelled|skipped|todo) (\d+)$", text, re.M)}
    if not counts:
        problems.append("node --test wrote no results")
    passed += counts.get("pass", 0)
    failed += counts.get("fail", 0) + counts.get("cancelled", 0)
    skipped += counts.get("skipped", 0) + counts.get("todo", 0)
    if counts and sum(counts.values()) == 0:
        problems.append("node --test ran no test")
    if node_rc != "0" and counts.get("fail", 0) + counts.get("cancelled", 0) == 0:
        problems.append(f"node --test exited {node_rc}")
for p in problems:
    print(f"run.sh: {p}")
failed += len(problems)
tail = f", {skipped} skipped" if skipped else ""
print(f"(compat suite took {elapsed}s)", flush=True)
print(f"compat: {passed} passed, {failed} failed{tail}")
sys.exit(1 if failed else 0)
EOF
