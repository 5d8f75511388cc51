#!/bin/bash
# alternated latency runs: before, after (rate $1, live $2 s), round $3
rate=$1; live=$2; round=$3
for tree in before after; do
  cd /tmp/lat-$tree
  echo "== $tree round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
  timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 50000 --live-seconds $live --rate $rate \
     --out /tmp/lat-$tree/latency-$rate-r$round.json > /tmp/lat-$tree/latency-$rate-r$round.log 2>&1
  echo "rc $? $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
done
