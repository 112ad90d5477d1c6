#!/usr/bin/env bash
# Cross-node publish -> delivery latency and throughput: three herald nodes sharing one Redis
# (or one NATS JetStream server), all on loopback. Publishes go to node A (or all nodes),
# subscribers sit on the others, so every delivery crossed the engine. Prints one JSON line per
# scenario (examples/cluster_latency.rs).
#
# Usage: bench/cluster.sh            (needs redis-server; REDIS_FSYNC=everysec|always|no)
#        ENGINE=nats bench/cluster.sh (needs nats-server)
# Every process started here is killed by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERALD="$ROOT/target/release/herald"
CLIENT="$ROOT/target/release/examples/cluster_latency"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/herald-cluster-bench.XXXXXX")"
REDIS_FSYNC="${REDIS_FSYNC:-everysec}"
ENGINE="${ENGINE:-redis}"
DURATION="${DURATION:-10s}"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 20000

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

(cd "$ROOT" && cargo build --release --quiet --bin herald && cargo build --release --quiet --example cluster_latency)

ENGINE_PORT=$(free_port)
if [ "$ENGINE" = nats ]; then
    command -v nats-server >/dev/null || { echo "nats-server is needed (apt-get install nats-server)" >&2; exit 1; }
    nats-server -js -a 127.0.0.1 -p "$ENGINE_PORT" -sd "$WORKDIR/nats" >"$WORKDIR/nats.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        grep -q "Server is ready" "$WORKDIR/nats.log" 2>/dev/null && break
        sleep 0.05
    done
    STORE=(--store "nats://127.0.0.1:$ENGINE_PORT/" --nats-prefix bench)
    DESCRIPTION="nats-server $(nats-server --version | grep -o 'v[0-9][0-9.]*') (JetStream, file storage)"
else
    command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
    appendonly=yes
    [ "$REDIS_FSYNC" = no ] && appendonly=no
    redis-server --port "$ENGINE_PORT" --bind 127.0.0.1 --save '' --appendonly "$appendonly" \
        --appendfsync "${REDIS_FSYNC/no/everysec}" --dir "$WORKDIR" --daemonize no --loglevel warning \
        >"$WORKDIR/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        redis-cli -p "$ENGINE_PORT" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    STORE=(--store "redis://127.0.0.1:$ENGINE_PORT/" --redis-prefix bench)
    DESCRIPTION="redis $(redis-server --version | grep -o 'v=[0-9.]*'), appendonly=$appendonly appendfsync=$REDIS_FSYNC"
fi

NODES=()
for name in a b c; do
    port=$(free_port)
    "$HERALD" serve --listen "127.0.0.1:$port" "${STORE[@]}" \
        --jwt-key bench --anonymous >"$WORKDIR/node-$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    NODES+=("127.0.0.1:$port")
done
TOKEN=$("$HERALD" token --key bench --publish '*')
export TOKEN

echo "# $DESCRIPTION; nodes ${NODES[*]}; $(nproc) cores"

scenario() {
    local label=$1
    shift
    printf '%s: ' "$label"
    "$CLIENT" --duration "$DURATION" "$@" || echo "(scenario reported loss or duplicates)"
}

# Latency: steady rates published on A, 50 streams on each of B and C.
for rate in 100 1000 5000; do
    scenario "latency A->B,C rate=$rate" --publish "${NODES[0]}" \
        --subscribe "${NODES[1]}" --subscribe "${NODES[2]}" --subscribers 50 --rate "$rate"
done
# Throughput: publish as fast as acknowledged, on every node, 10 streams on every node.
scenario "throughput all->all" --publish "${NODES[0]}" --publish "${NODES[1]}" \
    --publish "${NODES[2]}" --subscribe "${NODES[0]}" --subscribe "${NODES[1]}" \
    --subscribe "${NODES[2]}" --subscribers 10 --rate 0 --concurrency 96
for name in a b c; do
    grep -E "ERROR|WARN" "$WORKDIR/node-$name.log" | head -5 || true
done
