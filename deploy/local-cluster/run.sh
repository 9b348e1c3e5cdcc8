#!/usr/bin/env bash
# A local three-node runnel cluster: three processes on loopback ports, data under one folder.
#
#   deploy/local-cluster/run.sh [--detach] [DATA_DIR]     start nodes 1-3 (default DATA_DIR: ./data/cluster)
#   deploy/local-cluster/run.sh stop [DATA_DIR]           stop a detached cluster (SIGTERM, then waits)
#
# Each node is broker and controller, configured by deploy/cluster/node<N>.toml (client listener
# 127.0.0.1:<N>9092, controller listener 127.0.0.1:<N>9093, the three controllers as voters); its data is
# DATA_DIR/node<N>, its log DATA_DIR/node<N>.log. Clients bootstrap from
# 127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092. In the foreground, Ctrl-C stops all three cleanly.
# Restarting on the same DATA_DIR brings the same cluster back.
# Env: RUNNEL_BIN (default target/release/runnel, built with cargo if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONFIGS="$ROOT/deploy/cluster"
NODES=(1 2 3)
READY_TIMEOUT_S=60

cmd=start
detach=0
data=""
while (($#)); do
    case "$1" in
        stop) cmd=stop ;;
        --detach|-d) detach=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) data="$1" ;;
    esac
    shift
done
data="${data:-$PWD/data/cluster}"
mkdir -p "$data"
data="$(cd "$data" && pwd)"

stop_nodes() {
    local pids=()
    for n in "${NODES[@]}"; do
        local pidfile="$data/node$n.pid"
        [[ -f "$pidfile" ]] || continue
        local pid
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    # A clean stop flushes and closes every log: wait for it (up to 60 s each).
    for pid in "${pids[@]}"; do
        for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    echo "stopped ${#pids[@]} node(s)"
}

if [[ "$cmd" == stop ]]; then
    stop_nodes
    exit 0
fi

bin="${RUNNEL_BIN:-$ROOT/target/release/runnel}"
if [[ ! -x "$bin" ]]; then
    echo "== building runnel (cargo build --release -p runnel-broker)"
    (cd "$ROOT" && cargo build --release -p runnel-broker)
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/runnel"
fi

for n in "${NODES[@]}"; do
    if [[ -f "$data/node$n.pid" ]] && kill -0 "$(cat "$data/node$n.pid")" 2>/dev/null; then
        echo "node $n already runs (pid $(cat "$data/node$n.pid")); deploy/local-cluster/run.sh stop $data" >&2
        exit 1
    fi
done

for n in "${NODES[@]}"; do
    mkdir -p "$data/node$n"
    # Its own session: a Ctrl-C reaches the nodes through our trap, one clean SIGTERM each.
    setsid "$bin" --config "$CONFIGS/node$n.toml" --data-dir "$data/node$n" \
        </dev/null >>"$data/node$n.log" 2>&1 &
    echo $! >"$data/node$n.pid"
done
[[ $detach == 1 ]] || trap 'echo; stop_nodes; exit 0' INT TERM

# Ready when every client port accepts connections.
deadline=$((SECONDS + READY_TIMEOUT_S))
for n in "${NODES[@]}"; do
    until (exec 3<>"/dev/tcp/127.0.0.1/${n}9092") 2>/dev/null; do
        if ! kill -0 "$(cat "$data/node$n.pid")" 2>/dev/null; then
            echo "node $n exited; its log ($data/node$n.log) ends:" >&2
            tail -n 20 "$data/node$n.log" >&2
            stop_nodes
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "node $n did not listen on 127.0.0.1:${n}9092 within ${READY_TIMEOUT_S}s (log: $data/node$n.log)" >&2
            stop_nodes
            exit 1
        fi
        sleep 0.1
    done
done

echo "runnel cluster up: bootstrap servers 127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"
echo "  data and logs under $data (node1..node3, node<N>.log)"
if [[ $detach == 1 ]]; then
    echo "  stop it with: deploy/local-cluster/run.sh stop $data"
    exit 0
fi
echo "  Ctrl-C stops all three"
wait
