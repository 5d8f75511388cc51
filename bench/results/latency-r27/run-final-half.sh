#!/bin/bash
# The final tree at half its own live-stamped sustained rate (issue 15 item 4), quiet machine, after CI.
set -u
OUT=/work/main/bench/results/latency-r27
cd /tmp/r27/fin
for r in 1 2 3; do
  echo "== final half r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live-stamped --live-seconds 45 --load 0.5 --out $OUT/final-half-r$r.json > $OUT/final-half-r$r.log 2>&1
  echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
