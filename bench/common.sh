# Shared helpers for bench/*.sh (sourced, not run). Loopback only; every process started here is
# killed by PID on exit. The scripts: idle-rss.sh (memory per idle connection), fanout-cpu.sh
# (CPU per delivery), cluster.sh (three nodes), soak.sh (memory over time), compare.sh (Herald
# and nginx+nchan side by side); docs/benchmarks.md describes each and holds the figures.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERALD="${HERALD:-$ROOT/target/release/herald}"  # HERALD=path: another build (a smoke run)
EXAMPLES="$ROOT/target/release/examples"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/herald-bench.XXXXXX")"
# The processes this script runs; each is cleared once it has been reaped so a recycled PID is
# never signalled.
HUB_PID=""
CLIENT_PID=""
PUBLISHER_PID=""

# stop VAR: kills and reaps the process whose PID is in $VAR, then clears VAR.
stop() {
    local pid=${!1}
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    printf -v "$1" '%s' ""
}

cleanup() {
    stop PUBLISHER_PID
    stop CLIENT_PID
    stop HUB_PID
    rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Both the hub and the load client hold one descriptor per connection.
ulimit -n 20000

build() {
    (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --examples)
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_hub PORT: starts the hub in the background, sets HUB_PID, waits for /healthz.
start_hub() {
    local port=$1
    "$HERALD" serve --listen "127.0.0.1:$port" --store memory: --anonymous --jwt-key bench \
        >"$WORKDIR/hub-$port.log" 2>&1 &
    HUB_PID=$!
    local i
    for i in $(seq 1 100); do
        if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "hub did not start; log:" >&2
    cat "$WORKDIR/hub-$port.log" >&2
    return 1
}

subscriptions() {
    curl -fs "http://127.0.0.1:$1/healthz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["subscriptions"])'
}

# wait_subscriptions PORT N TIMEOUT_SECONDS
wait_subscriptions() {
    local port=$1 want=$2 limit=$3 have=0 start=$SECONDS
    while [ $((SECONDS - start)) -lt "$limit" ]; do
        have=$(subscriptions "$port" || echo 0)
        [ "$have" -eq "$want" ] && return 0
        sleep 0.2
    done
    echo "only $have of $want subscriptions after ${limit}s" >&2
    return 1
}

# rss_kb PID: VmRSS in KB.
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# rss_anon_kb PID: RssAnon in KB (heap and stacks, without the mapped binary).
rss_anon_kb() {
    awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"
}

# cpu_ticks PID: "utime stime" in clock ticks (user and kernel time of every thread).
cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}

# median of the arguments (numbers).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
