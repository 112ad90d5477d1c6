#!/usr/bin/env bash
# Herald side by side with nginx+nchan (docs/benchmarks.md, "Side by side with nginx+nchan"):
# every row of issue 15's goal table, as a Herald/nchan ratio, on equal cores.
#
# Installs nginx, libnginx-mod-nchan and python3-matplotlib with apt-get when missing (a system
# nginx the packages may start is left alone: ours runs from its own config on a free loopback
# port). Both servers get the same CPUs (taskset -c CPUS): the release hub (anonymous
# subscribers, `--store memory:` unless the scenario says redb) runs its runtime on them, and
# nginx runs ONE WORKER PER CPU (worker_processes = the number of CPUs in CPUS). Every run starts
# a fresh server and drives it with `herald bench --server herald|nchan --mode M --pid PIDS
# --json`, where PIDS is the hub, or nginx's master and every worker: their VmRSS, utime+stime
# and write system calls (/proc/PID/io syscw) are summed.
#
# Scenarios, each for both servers, RUNS times, alternating servers:
#   idle-h1, idle-h1-reuse, idle-h2c, idle-h2-tls
#           IDLE_N subscribers held HOLD, then memory per connection, over each --mode (h2c:
#           nginx `listen ... http2` on cleartext; h2-tls: `listen ... ssl http2`, a
#           self-signed certificate made with openssl, trusted with --ca); HTTP/2 carries 100
#           streams per connection
#   idle-h2c-1, idle-h2-tls-1
#           the same with ONE stream per connection (`--streams-per-connection 1`: a browser
#           tab with a single EventSource), so the per-connection cost shows
#   sweep   1 topic x FANOUT_N subscribers (HTTP/1.1) at each rate of RATES for DURATION, after
#           a 2 s hold: p99, CPU and write calls per delivery, and memory once drained
#           (scenarios fanout-<rate>). With DRAINED_HISTORY=N, Herald also runs the 1,000/s
#           fan-out with --history-size N (fanout-1000-history<N>): its drained memory like
#           for like with nchan, which keeps 10 messages per channel (nchan_message_buffer_length)
#           where Herald keeps 10,000 by default. Off by default: the default run measures what
#           it always did.
#   fanout-h2c
#           the same at H2C_RATE over h2c (fanout-h2c-<rate>)
#   Every h2c run (idle-h2c, idle-h2c-1, fanout-h2c) publishes over HTTP/1.1 to both servers
#   (`herald bench --publish-hub`): Herald takes it on the same port, nginx on a second,
#   HTTP/1.1 listener of the same server block. Only the subscriptions use h2c. (Over h2c every
#   publish shared one connection, so one nginx worker took them all, and nchan's fan-out
#   stalled them: see docs/benchmarks.md. H2C_PUBLISH=h2c publishes over h2c again, to both.)
#   topics  TOPICS_N topics x 1 subscriber at TOPICS_RATE for DURATION, TOPICS_CONCURRENCY
#           publishes in flight: Herald with --store memory: (topics-memory) and with a redb
#           data directory (topics-redb); nchan keeps memory only and runs topics-memory once
#   max     MAX_N subscribers (as many as the open-file limit allows): connections, memory
# Results go to target/compare/<UTC time>/: raw/*.json (one per run: every run is kept),
# logs/, summary.md (medians, the rate sweep, and the Herald/nchan ratio of each goal;
# bench/summary.py) and chart.png (fan-out deliveries/s and p99 against the offered rate;
# bench/chart.py). Prints summary.md.
#
# Usage: bench/compare.sh
#   env: RUNS=3 SCENARIOS="idle-h1 idle-h1-reuse idle-h2c idle-h2-tls idle-h2c-1 idle-h2-tls-1
#        sweep fanout-h2c topics"
#        SERVERS="herald nchan" CPUS=0-<nproc-1> DURATION=10s HOLD=10s IDLE_N=3000
#        FANOUT_N=1000 RATES="50 100 200 400 1000" H2C_RATE=1000 TOPICS_N=10000
#        TOPICS_RATE=5000 TOPICS_CONCURRENCY=16 MAX_N=19000 MAX_HOLD=5s
#        H2C_PUBLISH=http1 DRAINED_HISTORY= OUT=target/compare/<time>
#   a smoke run: RUNS=1 DURATION=2s HOLD=2s IDLE_N=300 FANOUT_N=100 RATES="50 400" \
#                TOPICS_N=300 TOPICS_RATE=300 bench/compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-idle-h1 idle-h1-reuse idle-h2c idle-h2-tls idle-h2c-1 idle-h2-tls-1 sweep fanout-h2c topics}
SERVERS=${SERVERS:-herald nchan}
CPUS=${CPUS:-0-$(($(nproc) - 1))}
DURATION=${DURATION:-10s}
HOLD=${HOLD:-10s}
IDLE_N=${IDLE_N:-3000}
MAX_N=${MAX_N:-19000}
MAX_HOLD=${MAX_HOLD:-5s}
FANOUT_N=${FANOUT_N:-1000}
RATES=${RATES:-50 100 200 400 1000}
H2C_RATE=${H2C_RATE:-1000}
H2C_PUBLISH=${H2C_PUBLISH:-http1}
TOPICS_N=${TOPICS_N:-10000}
TOPICS_RATE=${TOPICS_RATE:-5000}
TOPICS_CONCURRENCY=${TOPICS_CONCURRENCY:-16}
DRAINED_HISTORY=${DRAINED_HISTORY:-}
OUT=${OUT:-$ROOT/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}
# Extra `herald serve` arguments for the next start_herald (one scenario's).
HERALD_SERVE_ARGS=()

# cpu_count LIST: how many CPUs a taskset list (0-1, 0,2, 3) names.
cpu_count() {
    local part low high count=0
    for part in ${1//,/ }; do
        low=${part%-*}
        high=${part#*-}
        count=$((count + high - low + 1))
    done
    echo "$count"
}
WORKERS=$(cpu_count "$CPUS")

# The nginx master of the current nchan run, and the pids measured (master and workers).
NGINX_PID=""
NCHAN_PIDS=""
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


# nginx_conf PORT DIR MODE [PUBLISH_PORT]: one worker per CPU of CPUS, as many connections as
# the open-file limit allows, every path inside DIR, nchan's publisher and subscriber locations;
# the listener speaks what MODE needs (HTTP/1.1; `http2` on cleartext for h2c, which then takes
# HTTP/2 with prior knowledge only; `ssl http2` for h2-tls). With PUBLISH_PORT (h2c), a second
# listener there speaks HTTP/1.1, for the publisher. worker_connections is above
# the 20,000 descriptors on purpose: once fewer than 1/16 of them are free, nginx closes the
# connections still waiting for their request ("worker_connections are not enough, reusing
# connections"), which at 20,000 caps it at 18,750; at 22,000 the descriptors run out first.
nginx_conf() {
    local port=$1 dir=$2 mode=$3 publish_port=${4:-} listen
    case $mode in
        h2c)
            listen="listen 127.0.0.1:$port http2;"
            [ -n "$publish_port" ] && listen+="
        listen 127.0.0.1:$publish_port;"
            ;;
        h2-tls)
            listen="listen 127.0.0.1:$port ssl http2;
        ssl_certificate $WORKDIR/cert.pem;
        ssl_certificate_key $WORKDIR/key.pem;"
            ;;
        *) listen="listen 127.0.0.1:$port;" ;;
    esac
    cat <<EOF
load_module $(nchan_module);
worker_processes $WORKERS;
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
        $listen
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

# url PORT MODE: the server's base URL.
url() {
    case $2 in
        h2-tls) echo "https://127.0.0.1:$1" ;;
        *) echo "http://127.0.0.1:$1" ;;
    esac
}

# healthy PORT MODE: whether the server answers /healthz in MODE.
healthy() {
    case $2 in
        h2c) curl -fs --http2-prior-knowledge "$(url "$1" "$2")/healthz" >/dev/null 2>&1 ;;
        h2-tls) curl -fs --cacert "$WORKDIR/cert.pem" "$(url "$1" "$2")/healthz" >/dev/null 2>&1 ;;
        *) curl -fs "$(url "$1" "$2")/healthz" >/dev/null 2>&1 ;;
    esac
}

# start_nchan PORT MODE [PUBLISH_PORT]: starts nginx+nchan on CPUS in the foreground of a
# background job, sets NGINX_PID and NCHAN_PIDS (master,worker,...), waits for every worker and
# /healthz.
start_nchan() {
    local port=$1 mode=$2 publish_port=${3:-} dir="$WORKDIR/nginx-$port" i workers
    mkdir -p "$dir"
    nginx_conf "$port" "$dir" "$mode" "$publish_port" >"$dir/nginx.conf"
    taskset -c "$CPUS" nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' \
        >"$dir/stderr.log" 2>&1 &
    NGINX_PID=$!
    NCHAN_PIDS=""
    for i in $(seq 1 100); do
        workers=$(pgrep -P "$NGINX_PID" | paste -sd, - || true)
        if [ -n "$workers" ] && [ "$(tr ',' '\n' <<<"$workers" | grep -c .)" -ge "$WORKERS" ] \
            && healthy "$port" "$mode"; then
            NCHAN_PIDS="$NGINX_PID,$workers"
            return 0
        fi
        sleep 0.1
    done
    echo "nginx did not start; log:" >&2
    cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
    return 1
}

# start_herald PORT MODE STORE: starts the release hub on CPUS (TLS for h2-tls; STORE memory:
# or redb, a fresh data directory), sets HUB_PID, waits for /healthz.
start_herald() {
    local port=$1 mode=$2 store=$3 tls=() i
    [ "$mode" = h2-tls ] && tls=(--tls-cert "$WORKDIR/cert.pem" --tls-key "$WORKDIR/key.pem")
    [ "$store" = redb ] && store="$WORKDIR/data-$port"
    taskset -c "$CPUS" "$HERALD" serve --listen "127.0.0.1:$port" --store "$store" \
        --anonymous --jwt-key bench "${tls[@]}" "${HERALD_SERVE_ARGS[@]}" \
        >"$WORKDIR/hub-$port.log" 2>&1 &
    HUB_PID=$!
    for i in $(seq 1 100); do
        healthy "$port" "$mode" && return 0
        sleep 0.1
    done
    echo "hub did not start; log:" >&2
    cat "$WORKDIR/hub-$port.log" >&2
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
      f"CPU {num(r.get('server_cpu_us_per_delivery'), '{:.2f}')} us/delivery, "
      f"writes {num(r.get('server_writes_per_delivery'), '{:.3f}')}/delivery")
EOF
}

FAILED=0

# bench_run NAME SERVER RUN MODE STORE BENCH_ARGS...: a fresh server, one `herald bench --mode
# MODE` against it, its JSON into raw/NAME-SERVER-RUN.json.
bench_run() {
    local scenario=$1 server=$2 run=$3 mode=$4 store=$5 port publish_port="" pids rc=0
    shift 5
    local name="$scenario-$server-$run" extra=()
    port=$(free_port)
    case $server in
        herald)
            start_herald "$port" "$mode" "$store"
            pids=$HUB_PID
            extra=(--key bench)
            # h2c and HTTP/1.1 share Herald's port.
            [ "$mode$H2C_PUBLISH" = h2chttp1 ] && publish_port=$port
            ;;
        nchan)
            [ "$mode$H2C_PUBLISH" = h2chttp1 ] && publish_port=$(free_port)
            start_nchan "$port" "$mode" "$publish_port"
            pids=$NCHAN_PIDS
            ;;
        *)
            say "unknown server $server (SERVERS takes herald and nchan)"
            exit 64
            ;;
    esac
    [ "$mode" = h2-tls ] && extra+=(--ca "$WORKDIR/cert.pem")
    [ -n "$publish_port" ] && extra+=(--publish-hub "http://127.0.0.1:$publish_port")
    sleep 1
    say "$name: herald bench --server $server --mode $mode --pid $pids $*"
    "$HERALD" bench --server "$server" --mode "$mode" --hub "$(url "$port" "$mode")" \
        --pid "$pids" --json "${extra[@]}" "$@" >"$OUT/raw/$name.json" 2>"$OUT/logs/$name.log" &
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
if [ -z "${SKIP_BUILD:-}" ]; then
    say "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin herald)
fi
mkdir -p "$OUT/raw" "$OUT/logs"
say "results in $OUT; both servers on CPUs $CPUS, nginx with $WORKERS worker(s)"
# h2-tls: one self-signed certificate for 127.0.0.1, trusted by the bench with --ca.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORKDIR/key.pem" -out "$WORKDIR/cert.pem" -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" >/dev/null 2>&1

for run in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        for server in $SERVERS; do
            case $scenario in
                idle-h1 | idle-h1-reuse | idle-h2c | idle-h2-tls)
                    bench_run "$scenario" "$server" "$run" "${scenario#idle-}" memory: \
                        --subscribers "$IDLE_N" --hold "$HOLD" --rate 1 --duration 1s
                    ;;
                idle-h2c-1 | idle-h2-tls-1)
                    mode=${scenario#idle-}
                    bench_run "$scenario" "$server" "$run" "${mode%-1}" memory: \
                        --subscribers "$IDLE_N" --hold "$HOLD" --rate 1 --duration 1s \
                        --streams-per-connection 1
                    ;;
                max)
                    bench_run max "$server" "$run" h1 memory: --subscribers "$MAX_N" \
                        --hold "$MAX_HOLD" --rate 1 --duration 1s
                    ;;
                sweep)
                    for rate in $RATES; do
                        bench_run "fanout-$rate" "$server" "$run" h1 memory: \
                            --subscribers "$FANOUT_N" --hold 2s --rate "$rate" \
                            --duration "$DURATION"
                    done
                    if [ -n "$DRAINED_HISTORY" ] && [ "$server" = herald ]; then
                        HERALD_SERVE_ARGS=(--history-size "$DRAINED_HISTORY")
                        bench_run "fanout-1000-history$DRAINED_HISTORY" "$server" "$run" h1 \
                            memory: --subscribers "$FANOUT_N" --hold 2s --rate 1000 \
                            --duration "$DURATION"
                        HERALD_SERVE_ARGS=()
                    fi
                    ;;
                fanout-h2c)
                    bench_run "fanout-h2c-$H2C_RATE" "$server" "$run" h2c memory: \
                        --subscribers "$FANOUT_N" --hold 2s --rate "$H2C_RATE" \
                        --duration "$DURATION"
                    ;;
                topics)
                    stores="memory"
                    [ "$server" = herald ] && stores="memory redb"
                    for store in $stores; do
                        flag=redb
                        [ "$store" = memory ] && flag=memory:
                        bench_run "topics-$store" "$server" "$run" h1 "$flag" \
                            --subscribers "$TOPICS_N" --topics "$TOPICS_N" \
                            --rate "$TOPICS_RATE" --concurrency "$TOPICS_CONCURRENCY" \
                            --duration "$DURATION"
                    done
                    ;;
                *)
                    say "unknown scenario $scenario (SCENARIOS takes idle-h1 idle-h1-reuse" \
                        "idle-h2c idle-h2-tls idle-h2c-1 idle-h2-tls-1 sweep fanout-h2c topics" \
                        "max)"
                    exit 64
                    ;;
            esac
        done
    done
done

settings="RUNS=$RUNS SCENARIOS=\"$SCENARIOS\" CPUS=$CPUS DURATION=$DURATION HOLD=$HOLD"
settings+=" IDLE_N=$IDLE_N FANOUT_N=$FANOUT_N RATES=\"$RATES\" H2C_RATE=$H2C_RATE"
settings+=" H2C_PUBLISH=$H2C_PUBLISH"
settings+=" TOPICS_N=$TOPICS_N TOPICS_RATE=$TOPICS_RATE TOPICS_CONCURRENCY=$TOPICS_CONCURRENCY"
workers="Herald: one process on CPUs $CPUS; nginx+nchan: $WORKERS worker(s) on CPUs $CPUS"
versions="herald $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown);"
versions+=" $(nginx -v 2>&1 | sed 's/^nginx version: //');"
versions+=" nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown);"
versions+=" $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" "$ROOT/bench/summary.py" "$OUT" --settings "$settings" --workers "$workers" \
    --versions "$versions"
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
