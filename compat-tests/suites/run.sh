#!/usr/bin/env bash
# The clients' own test suites (librdkafka tests/, franz-go pkg/kgo) against runnel and/or Apache Kafka.
#
#   compat-tests/suites/run.sh --quick [--target runnel|kafka|both] [--suite NAME]
#       the pinned subsets in <suite>/quick.txt, each under a wall-clock cap; what CI runs (against runnel).
#   compat-tests/suites/run.sh --full [--target runnel|kafka|both] [--suite NAME]
#       every test; writes compat-tests/results/<suite>-<target>.json and regenerates
#       docs/compatibility.md (compat-tests/matrix.py).
#
#   ... --nodes 3
#       the same against a three-node cluster of the target (compat-tests/harness/cluster.py); the
#       tests in <suite>/allowlist-3nodes.txt (they need replication, "Cluster II") are skipped against
#       runnel too; results go to compat-tests/results/<suite>-<target>-3nodes.json and the
#       "Three nodes" section of docs/compatibility.md.
#
# Against runnel, tests in <suite>/allowlist.txt are skipped (pass --run-allowlisted to run them anyway).
# Exit status: non-zero if any test failed that is not allow-listed (for kafka: not `fails-on-kafka`).
# Env: RUNNEL_BIN (skip the cargo build), SUITE_JOBS (parallel librdkafka test processes, default 3),
#      QUICK_SUITE_CAP_S (per-suite wall-clock cap in --quick, default 300).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
COMPAT_DIR="$(cd "$HERE/.." && pwd)"
REPO_DIR="$(cd "$COMPAT_DIR/.." && pwd)"
VENV="$COMPAT_DIR/.cache/venv"

mode=""
target=""
suites=(librdkafka franz-go)
nodes=1
extra=()
while (($#)); do
    case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --target) target="$2"; shift ;;
        --suite) suites=("$2"); shift ;;
        --nodes) extra+=(--nodes "$2"); nodes="$2"; shift ;;
        --run-allowlisted) extra+=(--run-allowlisted) ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$mode" ]] || { echo "usage: $0 --quick|--full [--target runnel|kafka|both] [--suite librdkafka|franz-go]" >&2; exit 2; }
if [[ -z "$target" ]]; then
    [[ "$mode" == quick ]] && target=runnel || target=both
fi
case "$target" in
    runnel|kafka) targets=("$target") ;;
    both) targets=(kafka runnel) ;;
    *) echo "--target must be runnel, kafka or both" >&2; exit 2 ;;
esac

t0=$SECONDS
# The broker harness needs the venv (confluent-kafka for its readiness probe) and, for Kafka, the jars.
if [[ ! -x "$VENV/bin/python" || ! -d "$COMPAT_DIR/.cache/kafka-libs" ]]; then
    if [[ -x "$COMPAT_DIR/setup.sh" ]]; then
        "$COMPAT_DIR/setup.sh"
    else
        echo "missing $VENV or compat-tests/.cache/kafka-libs and no compat-tests/setup.sh to make them" >&2
        exit 1
    fi
fi
for t in "${targets[@]}"; do
    if [[ "$t" == runnel && -z "${RUNNEL_BIN:-}" ]]; then
        echo "== cargo build --release -p runnel-broker"
        (cd "$REPO_DIR" && cargo build --release -p runnel-broker)
    fi
done

# Build (or find cached) suites first, so build time is not charged to a suite's run cap.
for s in "${suites[@]}"; do
    b=$SECONDS
    "$HERE/$s/build.sh" >/dev/null
    echo "== $s build ready ($((SECONDS - b))s)"
done

failed=0
passed=0
summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT
for t in "${targets[@]}"; do
    for s in "${suites[@]}"; do
        echo "== $s against $t ($mode)"
        s0=$SECONDS
        args=(--target "$t" "${extra[@]}")
        if [[ "$mode" == quick ]]; then
            args+=(--quick)
            cmd=(timeout --kill-after=30 "${QUICK_SUITE_CAP_S:-300}" "$VENV/bin/python" "$HERE/$s/run.py" "${args[@]}")
        else
            cmd=("$VENV/bin/python" "$HERE/$s/run.py" "${args[@]}")
        fi
        if "${cmd[@]}" | tee -a "$summary"; then
            passed=$((passed + 1))
        else
            rc=$?
            [[ $rc == 124 ]] && echo "!! $s against $t exceeded its ${QUICK_SUITE_CAP_S:-300}s cap"
            failed=$((failed + 1))
        fi
        echo "== $s against $t took $((SECONDS - s0))s"
    done
done

if [[ "$mode" == full ]]; then
    # The matrix reads every results file: one node in its main tables, three in "Three nodes".
    "$VENV/bin/python" "$COMPAT_DIR/matrix.py"
fi
echo "== suites done in $((SECONDS - t0))s; suite runs: $passed ok, $failed not ok"
# One closing line over every test of every suite run, in the plain form CI reads.
grep -E '^[a-z-]+-(runnel|kafka): [0-9]+ passed, [0-9]+ failed' "$summary" | awk -F'[: ,]+' \
    '{p += $2; f += $4; s += $6} END {printf "suites: %d passed, %d failed, %d skipped\n", p, (f == 0 ? '"$failed"' : f), s}'
((failed == 0))
