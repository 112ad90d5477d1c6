#!/usr/bin/env bash
# Herald side by side with nginx+nchan (docs/benchmarks.md, "Side by side with nginx+nchan").
#
# Installs nginx, libnginx-mod-nchan and python3-matplotlib with apt-get when missing (a system
# nginx the packages may start is left alone: ours runs from its own config on a free loopback
# port). Every run starts a fresh server, either the release hub (memory store, anonymous
# subscribers) or nginx+nchan (one worker process), and drives it with `herald bench --server
# herald|nchan --pid PID --json`, where PID is the hub, or nchan's worker process: its VmRSS
# before and after connecting, its utime+stime from the first publish to the end of the drain.
# Scenarios, each for both servers, RUNS times, alternating servers:
#   idle    IDLE_N subscribers held HOLD, then memory per connection
#   max     MAX_N subscribers (as many as the open-file limit allows): connections, memory
#   fanout  1 topic x FANOUT_N subscribers at each rate of RATES for DURATION
#   topics  TOPICS_N topics x 1 subscriber at TOPICS_RATE for DURATION
# Results go to target/compare/<UTC time>/: raw/*.json (one per run), logs/, summary.md (medians
# and the Herald/nchan ratios against the targets; bench/summary.py) and chart.png (fan-out
# deliveries/s and p99 latency against the offered rate; bench/chart.py). Prints summary.md.
#
# Usage: bench/compare.sh
#   env: RUNS=3 SCENARIOS="idle max fanout topics" SERVERS="herald nchan" DURATION=10s HOLD=20s
#        IDLE_N=10000 MAX_N=19000 MAX_HOLD=5s FANOUT_N=1000 RATES="50 1000 5000"
#        TOPICS_N=10000 TOPICS_RATE=5000 OUT=target/compare/<time>
#   a smoke run: RUNS=1 DURATION=3s HOLD=2s IDLE_N=1000 MAX_N=2000 MAX_HOLD=2s RATES="50 300" \
#                TOPICS_N=500 TOPICS_RATE=500 bench/compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-idle max fanout topics}
SERVERS=${SERVERS:-herald nchan}
DURATION=${DURATION:-10s}
HOLD=${HOLD:-20s}
IDLE_N=${IDLE_N:-10000}
MAX_N=${MAX_N:-19000}
MAX_HOLD=${MAX_HOLD:-5s}
FANOUT_N=${FANOUT_N:-1000}
RATES=${RATES:-50 1000 5000}
TOPICS_N=${TOPICS_N:-10000}
TOPICS_RATE=${TOPICS_RATE:-5000}
OUT=${OUT:-$ROOT/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}

# The nginx master of the current nchan run, and its worker (the process measured).
NGINX_PID=""
NCHAN_WORKER=""
trap 'stop NGINX_PID; cleanup' EXIT

say() {
    printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

# nchan_module: the path of nchan's dynamic module, or nothing.
nchan_module() {
    local so conf=/usr/share/nginx/modules-available/mod-nchan.conf
    for so in /usr/lib/nginx/modules/ngx_nchan_module.so /usr/share/nginx/modules/ngx_nchan_module.so; do
        if [ -f "$so" ]; then
            echo "$so"
            return
        fi
    done
    # Debian's snippet names it relative to nginx's prefix.
    so=$(sed -n 's/^ *load_module *\([^;]*\);.*/\1/p' "$conf" 2>/dev/null | head -n1)
    case $so in
        "") ;;
        /*) [ -f "$so" ] && echo "$so" ;;
        *) [ -f "/usr/share/nginx/$so" ] && echo "/usr/share/nginx/$so" ;;
    esac
}

# chart_python: a Python that can import matplotlib. Debian's python3-matplotlib serves
# /usr/bin/python3, which a python3 earlier on PATH (pyenv, a virtualenv) may hide.
chart_python() {
    local python
    for python in python3 /usr/bin/python3; do
        if "$python" -c 'import matplotlib' >/dev/null 2>&1; then
            echo "$python"
            return
        fi
    done
}

install_missing() {
    local missing=() sudo=()
    command -v nginx >/dev/null 2>&1 || missing+=(nginx)
    [ -n "$(nchan_module)" ] || missing+=(libnginx-mod-nchan)
    [ -n "$(chart_python)" ] || missing+=(python3-matplotlib)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    [ -n "$(nchan_module)" ] || { say "nchan's module is not where expected after install"; exit 1; }
    [ -n "$(chart_python)" ] || { say "no python3 imports matplotlib after install"; exit 1; }
}

# nginx_conf PORT DIR: one worker, as many connections as the open-file limit allows, every
# path inside DIR, nchan's publisher and subscriber locations. worker_connections is above the
# 20,000 descriptors on purpose: once fewer than 1/16 of them are free, nginx closes the
# connections still waiting for their request ("worker_connections are not enough, reusing
# connections"), which at 20,000 caps it at 18,750; at 22,000 the descriptors run out first.
nginx_conf() {
    local port=$1 dir=$2
    cat <<EOF
load_module $(nchan_module);
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 22000;
}
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /healthz {
            return 200 "ok\n";
        }
        location ~ ^/pub/(.+)$ {
            nchan_publisher;
            nchan_channel_id \$1;
        }
        location ~ ^/sub/(.+)$ {
            nchan_subscriber eventsource;
            nchan_channel_id \$1;
        }
    }
}
EOF
}

# start_nchan PORT: starts nginx+nchan in the foreground of a background job, sets NGINX_PID
# and NCHAN_WORKER, waits for /healthz.
start_nchan() {
    local port=$1 dir="$WORKDIR/nginx-$port" i
    mkdir -p "$dir"
    nginx_conf "$port" "$dir" >"$dir/nginx.conf"
    nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/stderr.log" 2>&1 &
    NGINX_PID=$!
    NCHAN_WORKER=""
    for i in $(seq 1 100); do
        NCHAN_WORKER=$(pgrep -P "$NGINX_PID" | head -n1 || true)
        if [ -n "$NCHAN_WORKER" ] && curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "nginx did not start; log:" >&2
    cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
    return 1
}

# one_line FILE: the figures of one run's JSON on one line.
one_line() {
    python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def num(value, fmt):
    return "n/a" if value is None else fmt.format(value)
per_conn = r.get("rss_per_connection_bytes")
print(f"{r['connections']} connections ({r['connect_failures']} failed), "
      f"RSS/conn {num(per_conn and per_conn / 1024, '{:.2f}')} KB, "
      f"published {r['published']} ({r['publish_rate']:.0f}/s, {r['publish_errors']} errors), "
      f"delivered {r['delivered']}/{r['expected']} ({r['deliveries_per_sec']:.0f}/s), loss {r['loss']}, "
      f"p50 {r['latency_ms']['p50']:.2f} ms p99 {r['latency_ms']['p99']:.2f} ms, "
      f"CPU {num(r.get('server_cpu_us_per_delivery'), '{:.2f}')} us/delivery")
EOF
}

FAILED=0

# bench_run NAME SERVER RUN BENCH_ARGS...: a fresh server, one `herald bench` against it, its
# JSON into raw/NAME-SERVER-RUN.json.
bench_run() {
    local scenario=$1 server=$2 run=$3 port pid rc=0
    shift 3
    local name="$scenario-$server-$run" auth=()
    port=$(free_port)
    case $server in
        herald)
            start_hub "$port"
            pid=$HUB_PID
            auth=(--key bench)
            ;;
        nchan)
            start_nchan "$port"
            pid=$NCHAN_WORKER
            ;;
        *)
            say "unknown server $server (SERVERS takes herald and nchan)"
            exit 64
            ;;
    esac
    sleep 1
    say "$name: herald bench --server $server $*"
    "$HERALD" bench --server "$server" --hub "http://127.0.0.1:$port" --pid "$pid" --json \
        "${auth[@]}" "$@" >"$OUT/raw/$name.json" 2>"$OUT/logs/$name.log" &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    stop HUB_PID
    stop NGINX_PID
    if [ "$rc" -ne 0 ] || [ ! -s "$OUT/raw/$name.json" ]; then
        say "$name: herald bench failed (exit $rc): $(tail -n1 "$OUT/logs/$name.log")"
        rm -f "$OUT/raw/$name.json"
        FAILED=$((FAILED + 1))
        return 0
    fi
    say "$name: $(one_line "$OUT/raw/$name.json")"
}

install_missing
PYTHON=$(chart_python)
say "building the release binary"
(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT/raw" "$OUT/logs"
say "results in $OUT"

for run in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        for server in $SERVERS; do
            case $scenario in
                idle)
                    bench_run idle "$server" "$run" --subscribers "$IDLE_N" --hold "$HOLD" \
                        --rate 1 --duration 1s
                    ;;
                max)
                    bench_run max "$server" "$run" --subscribers "$MAX_N" --hold "$MAX_HOLD" \
                        --rate 1 --duration 1s
                    ;;
                fanout)
                    for rate in $RATES; do
                        bench_run "fanout-$rate" "$server" "$run" --subscribers "$FANOUT_N" \
                            --rate "$rate" --duration "$DURATION"
                    done
                    ;;
                topics)
                    bench_run topics "$server" "$run" --subscribers "$TOPICS_N" \
                        --topics "$TOPICS_N" --rate "$TOPICS_RATE" --duration "$DURATION"
                    ;;
                *)
                    say "unknown scenario $scenario (SCENARIOS takes idle max fanout topics)"
                    exit 64
                    ;;
            esac
        done
    done
done

settings="RUNS=$RUNS SCENARIOS=\"$SCENARIOS\" DURATION=$DURATION HOLD=$HOLD IDLE_N=$IDLE_N"
settings+=" MAX_N=$MAX_N MAX_HOLD=$MAX_HOLD FANOUT_N=$FANOUT_N RATES=\"$RATES\" TOPICS_N=$TOPICS_N"
settings+=" TOPICS_RATE=$TOPICS_RATE"
versions="herald $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown);"
versions+=" $(nginx -v 2>&1 | sed 's/^nginx version: //');"
versions+=" nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown);"
versions+=" $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" "$ROOT/bench/summary.py" "$OUT" --settings "$settings" --versions "$versions"
written="$OUT/summary.md"
if ls "$OUT"/raw/fanout-* >/dev/null 2>&1; then
    "$PYTHON" "$ROOT/bench/chart.py" "$OUT"
    written+=" $OUT/chart.png"
fi
cat "$OUT/summary.md"
say "written: $written"
if [ "$FAILED" -ne 0 ]; then
    say "$FAILED run(s) failed; see $OUT/logs"
    exit 1
fi
