#!/bin/bash
# Quiet-window measurements (no helper running): latency at half the live-shaped sustained rate and at
# 1,000 events/s, before/after the output linger; then scale-out 1 vs 2 processes on 200,000 events.
set -u
OUT=/work/main/bench/results/quiet-1203
mkdir -p $OUT
load() { cut -d' ' -f1-3 /proc/loadavg; }
for spec in "after half" "before half" "after 1000" "before 1000"; do
  set -- $spec; tree=$1; kind=$2
  cd /tmp/lat-$tree
  echo "== latency $tree $kind $(date -u +%T) load $(load)"
  if [ $kind = half ]; then
    timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live --live-seconds 40 --load 0.5 --out $OUT/latency-$tree-half.json > $OUT/latency-$tree-half.log 2>&1
  else
    timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 20000 --live-seconds 40 --rate 1000 --out $OUT/latency-$tree-1000.json > $OUT/latency-$tree-1000.log 2>&1
  fi
  echo "rc $? $(date -u +%T) load $(load)"
done
cd /tmp/lat-after
echo "== scale $(date -u +%T) load $(load)"
timeout 1200 .venv/bin/python bench/scale_bench.py --events 200000 --rounds 1 --out $OUT/scale-200k.json > $OUT/scale-200k.log 2>&1
echo "rc $? $(date -u +%T) load $(load)"
