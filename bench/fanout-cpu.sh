#!/usr/bin/env bash
# Hub CPU per delivery.
#
# Starts the release hub on a free loopback port, opens S subscribers on one topic
# (examples/idle_subscribers.rs, which reads and counts every event), then publishes U updates
# to that topic at R per second over one keep-alive connection (examples/publish_load.rs, with a
# token from `herald token --key bench --publish '*'`). The hub's utime+stime (/proc/PID/stat) is
# read before the first publish and after the last event reached every subscriber;
# CPU per delivery = delta / (U * S). The same span of time with no publishing is measured first
# (idle cost: heartbeats, timers), and shown. Repeats RUNS times with a fresh hub; prints medians.
#
# Usage: bench/fanout-cpu.sh [S] [U] [R]    (defaults 1000 2000 200; env: RUNS=3)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

S=${1:-1000}
U=${2:-2000}
R=${3:-200}
RUNS=${RUNS:-3}
HZ=$(getconf CLK_TCK)
SPAN=$(( (U + R - 1) / R ))

build
TOKEN=$("$HERALD" token --key bench --publish '*')
per_delivery=()
per_publish=()
for run in $(seq 1 "$RUNS"); do
    port=$(free_port)
    start_hub "$port"
    "$EXAMPLES/idle_subscribers" --addr "127.0.0.1:$port" --count "$S" \
        --expect-events $((S * U)) --hold-secs $((SPAN * 3 + 120)) >"$WORKDIR/client-$run.log" 2>&1 &
    CLIENT_PID=$!
    wait_subscriptions "$port" "$S" 60 || { cat "$WORKDIR/client-$run.log" >&2; exit 1; }
    sleep 1

    idle0=$(cpu_ticks "$HUB_PID")
    sleep "$SPAN"
    idle1=$(cpu_ticks "$HUB_PID")

    t0=$(cpu_ticks "$HUB_PID")
    TOKEN="$TOKEN" "$EXAMPLES/publish_load" --addr "127.0.0.1:$port" --count "$U" --rate "$R" \
        >"$WORKDIR/publisher-$run.log" 2>&1 &
    PUBLISHER_PID=$!
    wait "$PUBLISHER_PID" || { cat "$WORKDIR/publisher-$run.log" >&2; exit 1; }
    PUBLISHER_PID=""
    # The subscriber process exits once all S*U events have arrived.
    wait "$CLIENT_PID" || { cat "$WORKDIR/client-$run.log" >&2; exit 1; }
    CLIENT_PID=""
    t1=$(cpu_ticks "$HUB_PID")
    stop HUB_PID

    cpu_us=$(( (t1 - t0) * 1000000 / HZ ))
    idle_us=$(( (idle1 - idle0) * 1000000 / HZ ))
    us=$(awk -v c="$cpu_us" -v n=$((S * U)) 'BEGIN { printf "%.3f", c / n }')
    pub=$(awk -v c="$cpu_us" -v n="$U" 'BEGIN { printf "%.0f", c / n }')
    per_delivery+=("$us")
    per_publish+=("$pub")
    echo "run $run: $(tail -n1 "$WORKDIR/publisher-$run.log"); $(tail -n1 "$WORKDIR/client-$run.log")"
    echo "run $run: hub CPU $((cpu_us / 1000)) ms for $((S * U)) deliveries = ${us} µs per delivery" \
        "(${pub} µs per publish); idle for ${SPAN}s: $((idle_us / 1000)) ms"
done
echo "median over $RUNS runs: $(median "${per_delivery[@]}") µs CPU per delivery" \
    "($(median "${per_publish[@]}") µs per publish to $S subscribers)"
