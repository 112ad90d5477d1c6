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
# bench/compare.sh measures the same next to nginx+nchan (with `herald bench --pid`).
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
per_user=()
per_sys=()
for run in $(seq 1 "$RUNS"); do
    port=$(free_port)
    start_hub "$port"
    "$EXAMPLES/idle_subscribers" --addr "127.0.0.1:$port" --count "$S" \
        --expect-events $((S * U)) --hold-secs $((SPAN * 3 + 120)) >"$WORKDIR/client-$run.log" 2>&1 &
    CLIENT_PID=$!
    wait_subscriptions "$port" "$S" 60 || { cat "$WORKDIR/client-$run.log" >&2; exit 1; }
    sleep 1

    read -r iu0 is0 < <(cpu_ticks "$HUB_PID")
    sleep "$SPAN"
    read -r iu1 is1 < <(cpu_ticks "$HUB_PID")

    read -r u0 s0 < <(cpu_ticks "$HUB_PID")
    TOKEN="$TOKEN" "$EXAMPLES/publish_load" --addr "127.0.0.1:$port" --count "$U" --rate "$R" \
        >"$WORKDIR/publisher-$run.log" 2>&1 &
    PUBLISHER_PID=$!
    wait "$PUBLISHER_PID" || { cat "$WORKDIR/publisher-$run.log" >&2; exit 1; }
    PUBLISHER_PID=""
    # The subscriber process exits once all S*U events have arrived.
    wait "$CLIENT_PID" || { cat "$WORKDIR/client-$run.log" >&2; exit 1; }
    CLIENT_PID=""
    read -r u1 s1 < <(cpu_ticks "$HUB_PID")
    stop HUB_PID

    deliveries=$((S * U))
    user_us=$(( (u1 - u0) * 1000000 / HZ ))
    sys_us=$(( (s1 - s0) * 1000000 / HZ ))
    cpu_us=$((user_us + sys_us))
    idle_us=$(( (iu1 - iu0 + is1 - is0) * 1000000 / HZ ))
    us=$(awk -v c="$cpu_us" -v n="$deliveries" 'BEGIN { printf "%.3f", c / n }')
    us_user=$(awk -v c="$user_us" -v n="$deliveries" 'BEGIN { printf "%.3f", c / n }')
    us_sys=$(awk -v c="$sys_us" -v n="$deliveries" 'BEGIN { printf "%.3f", c / n }')
    per_delivery+=("$us")
    per_user+=("$us_user")
    per_sys+=("$us_sys")
    echo "run $run: $(tail -n1 "$WORKDIR/publisher-$run.log"); $(tail -n2 "$WORKDIR/publisher-$run.log" | head -n1)"
    echo "run $run: $(tail -n1 "$WORKDIR/client-$run.log")"
    echo "run $run: hub CPU $((cpu_us / 1000)) ms (user $((user_us / 1000)), kernel $((sys_us / 1000)))" \
        "for $deliveries deliveries = ${us} µs per delivery (user ${us_user}, kernel ${us_sys});" \
        "idle for ${SPAN}s before: $((idle_us / 1000)) ms"
done
echo "median over $RUNS runs: $(median "${per_delivery[@]}") µs CPU per delivery" \
    "(user $(median "${per_user[@]}"), kernel $(median "${per_sys[@]}"))"
