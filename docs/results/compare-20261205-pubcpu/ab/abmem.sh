#!/usr/bin/env bash
# abmem.sh TAG RUNS BIN...: topics-memory only (compare.sh's flags), alternating binaries.
tag=$1; runs=$2; shift 2
mkdir -p /tmp/pubcpu/$tag; cd /tmp/pubcpu/$tag
ulimit -n 20000
port=18500
for run in $(seq 1 "$runs"); do
  for bin in "$@"; do
    port=$((port+1)); name=$(basename "$bin")
    taskset -c 0-1 $bin serve --listen 127.0.0.1:$port --store memory: --anonymous --jwt-key bench >hub-$name-$run.log 2>&1 & HUB=$!
    for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/healthz >/dev/null 2>&1 && break; sleep 0.1; done
    sleep 1
    $bin bench --server herald --mode h1 --hub http://127.0.0.1:$port --pid $HUB --json --key bench --subscribers 10000 --topics 10000 --rate 5000 --concurrency 16 --duration 10s > $name-$run.json 2>$name-$run.log
    kill $HUB; wait $HUB 2>/dev/null
    python3 -c "import json,sys;r=json.load(open(sys.argv[1]));print(sys.argv[2], sys.argv[3], r['server_cpu_us_per_delivery'], 'loss', r['loss'], 'rate', round(r['publish_rate']))" $name-$run.json $name $run
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
