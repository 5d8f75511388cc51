#!/bin/bash
# alternated latency runs at a low live rate: before, after (rate $1, live $2 s), round $3
rate=$1; live=$2; round=$3; order=${4:-"before after"}
for tree in $order; do
  cd /tmp/lat-$tree
  echo "== $tree round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
  timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 20000 --live-seconds $live --rate $rate \
     --out /tmp/lat-$tree/latency-$rate-r$round.json > /tmp/lat-$tree/latency-$rate-r$round.log 2>&1
  echo "rc $? $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
done
