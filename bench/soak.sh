#!/usr/bin/env bash
# Soak: a bounded run at moderate load against a release hub with the durable store, checking
# that memory stays flat.
#
# Starts the release hub on a free loopback port with the embedded redb store (in a temp dir),
# runs `herald bench` for SOAK_MINUTES (SUBSCRIBERS subscribers over TOPICS topics, RATE updates
# per second), samples the hub's VmRSS and RssAnon every SAMPLE_SECONDS into a CSV, and fails
# when the mean RSS of the last third of the samples is more than MAX_GROWTH_PCT above the mean
# of the first third (samples taken during the first WARMUP_SECONDS are not counted: history
# fills up in HISTORY/RATE seconds, 100 s by default, and the allocator and the store's page
# cache settle after that), when the hub died, or when the bench saw loss or duplicates.
#
# Usage: bench/soak.sh
#   env: SOAK_MINUTES=30 SUBSCRIBERS=1000 TOPICS=10 RATE=100 PAYLOAD=256 SAMPLE_SECONDS=30
#        WARMUP_SECONDS=300 MAX_GROWTH_PCT=10 HISTORY=10000 SOAK_CSV=target/soak/soak-<time>.csv
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SOAK_MINUTES=${SOAK_MINUTES:-30}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
TOPICS=${TOPICS:-10}
RATE=${RATE:-100}
PAYLOAD=${PAYLOAD:-256}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-30}
WARMUP_SECONDS=${WARMUP_SECONDS:-300}
HISTORY=${HISTORY:-10000}
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-10}
SOAK_CSV=${SOAK_CSV:-$ROOT/target/soak/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}
KEY=soak-secret

(cd "$ROOT" && cargo build --release --quiet --bin herald)
# Run a copy, so a rebuild of target/release during the soak does not touch the running binary.
cp "$HERALD" "$WORKDIR/herald"
HERALD="$WORKDIR/herald"
mkdir -p "$(dirname "$SOAK_CSV")"

port=$(free_port)
"$HERALD" serve --listen "127.0.0.1:$port" --store "$WORKDIR/data" --anonymous --jwt-key "$KEY" \
    --history-size "$HISTORY" >"$WORKDIR/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "soak: ${SOAK_MINUTES} min, $SUBSCRIBERS subscribers, $TOPICS topics, $RATE updates/s," \
    "$PAYLOAD B; hub pid $HUB_PID on port $port; samples -> $SOAK_CSV"
"$HERALD" bench --hub "http://127.0.0.1:$port" --subscribers "$SUBSCRIBERS" --topics "$TOPICS" \
    --rate "$RATE" --payload "$PAYLOAD" --duration "${SOAK_MINUTES}m" --pid "$HUB_PID" --json \
    --key "$KEY" >"$WORKDIR/bench.json" 2>"$WORKDIR/bench.log" &
CLIENT_PID=$!

echo "elapsed_s,rss_kb,rss_anon_kb,subscriptions" >"$SOAK_CSV"
start=$SECONDS
while kill -0 "$CLIENT_PID" 2>/dev/null; do
    if ! kill -0 "$HUB_PID" 2>/dev/null; then
        echo "soak: FAIL: the hub died; log:" >&2
        tail -20 "$WORKDIR/hub.log" >&2
        exit 1
    fi
    subs=$(subscriptions "$port" 2>/dev/null || echo "")
    echo "$((SECONDS - start)),$(rss_kb "$HUB_PID"),$(rss_anon_kb "$HUB_PID"),$subs" >>"$SOAK_CSV"
    # Sleep in short steps so the end of the bench is noticed at once.
    for _ in $(seq 1 "$SAMPLE_SECONDS"); do
        kill -0 "$CLIENT_PID" 2>/dev/null || break
        sleep 1
    done
done
bench_status=0
wait "$CLIENT_PID" || bench_status=$?
CLIENT_PID=""
echo "$((SECONDS - start)),$(rss_kb "$HUB_PID"),$(rss_anon_kb "$HUB_PID"),$(subscriptions "$port" || echo "")" >>"$SOAK_CSV"

result=$(python3 - "$SOAK_CSV" "$WARMUP_SECONDS" "$MAX_GROWTH_PCT" "$WORKDIR/bench.json" <<'PY'
import csv, json, sys
path, warmup, limit, bench_path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = [r for r in csv.DictReader(open(path)) if float(r["elapsed_s"]) >= warmup]
if len(rows) < 3:
    print("FAIL: fewer than 3 samples after the warm-up; run longer")
    sys.exit(0)
third = len(rows) // 3
mean = lambda rs, k: sum(float(r[k]) for r in rs) / len(rs)
first, last = rows[:third], rows[-third:]
growth = (mean(last, "rss_kb") - mean(first, "rss_kb")) / mean(first, "rss_kb") * 100
anon_growth = (mean(last, "rss_anon_kb") - mean(first, "rss_anon_kb")) / mean(first, "rss_anon_kb") * 100
peak = max(int(r["rss_kb"]) for r in rows)
try:
    bench = json.load(open(bench_path))
except Exception as error:  # the bench failed before printing
    bench = {"error": str(error)}
verdict = "PASS" if growth <= limit else "FAIL"
problems = []
if bench.get("loss", 1) != 0 or bench.get("duplicates", 1) != 0:
    verdict = "FAIL"
    problems.append("loss or duplicates")
print(f"{verdict}: {len(rows)} samples after warm-up; RSS first third {mean(first, 'rss_kb'):.0f} KB,"
      f" last third {mean(last, 'rss_kb'):.0f} KB ({growth:+.1f}%, limit {limit:.0f}%);"
      f" RssAnon {anon_growth:+.1f}%; peak {peak} KB;"
      f" bench: published {bench.get('published')}, delivered {bench.get('delivered')},"
      f" loss {bench.get('loss')}, duplicates {bench.get('duplicates')},"
      f" connections {bench.get('connections')}, p99 {bench.get('latency_ms', {}).get('p99')} ms"
      + ("; " + ", ".join(problems) if problems else ""))
PY
)
echo "soak: $result"
cp "$WORKDIR/bench.json" "${SOAK_CSV%.csv}.bench.json" 2>/dev/null || true
[ "$bench_status" -eq 0 ] || { echo "soak: FAIL: herald bench exited $bench_status" >&2; tail -5 "$WORKDIR/bench.log" >&2; exit 1; }
case "$result" in PASS*) exit 0 ;; *) exit 1 ;; esac
