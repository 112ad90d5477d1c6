#!/usr/bin/env bash
# Hub memory per idle SSE subscriber.
#
# Starts the release hub on a free loopback port (memory store, anonymous subscribers), opens N
# idle subscribers on one topic from one load process (examples/idle_subscribers.rs), waits
# until /healthz reports N subscriptions, and compares the hub's VmRSS (/proc/PID/status)
# before and after. Repeats RUNS times with a fresh hub and prints the median.
# bench/compare.sh measures the same next to nginx+nchan (with `herald bench --hold`).
#
# Usage: bench/idle-rss.sh [N]        (env: RUNS=3, SETTLE=3 seconds, SOURCES=1)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N=${1:-10000}
RUNS=${RUNS:-3}
SETTLE=${SETTLE:-3}
SOURCES=${SOURCES:-1}

build
per_conn=()
anon_per_conn=()
for run in $(seq 1 "$RUNS"); do
    port=$(free_port)
    start_hub "$port"
    sleep 1
    before=$(rss_kb "$HUB_PID")
    before_anon=$(rss_anon_kb "$HUB_PID")

    "$EXAMPLES/idle_subscribers" --addr "127.0.0.1:$port" --count "$N" --sources "$SOURCES" \
        --hold-secs 300 >"$WORKDIR/client-$run.log" 2>&1 &
    CLIENT_PID=$!
    wait_subscriptions "$port" "$N" 120 || { cat "$WORKDIR/client-$run.log" >&2; exit 1; }
    sleep "$SETTLE"
    after=$(rss_kb "$HUB_PID")
    after_anon=$(rss_anon_kb "$HUB_PID")

    stop CLIENT_PID
    wait_subscriptions "$port" 0 30 || true
    sleep 1
    released=$(rss_kb "$HUB_PID")
    stop HUB_PID

    kb=$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN { printf "%.2f", (a - b) / n }')
    anon_kb=$(awk -v a="$after_anon" -v b="$before_anon" -v n="$N" 'BEGIN { printf "%.2f", (a - b) / n }')
    per_conn+=("$kb")
    anon_per_conn+=("$anon_kb")
    echo "run $run: $N subscribers; hub VmRSS ${before} KB -> ${after} KB (RssAnon ${before_anon} -> ${after_anon} KB);" \
        "${kb} KB per connection (RssAnon ${anon_kb} KB); after they left: ${released} KB"
done
echo "median over $RUNS runs: $(median "${per_conn[@]}") KB VmRSS per idle connection" \
    "($(median "${anon_per_conn[@]}") KB RssAnon)"
