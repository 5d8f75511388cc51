#!/bin/bash
# Variants at a fixed 1,400 events/s (about half the quiet machine's live-stamped sustained rate), alternated.
set -u
OUT=/work/main/bench/results/latency-r27
cd /tmp/r27/lat
for r in 1 2; do
for v in default interval0 linger0.025; do
  case $v in
    default) extra=();;
    interval0) extra=(--worker-setting live_fetch_interval_s=0);;
    linger0.025) extra=(--worker-setting output_linger_s=0.025);;
  esac
  echo "== $v r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live-stamped --live-seconds 45 --rate 1400 "${extra[@]}" --out $OUT/r1400-$v-r$r.json > $OUT/r1400-$v-r$r.log 2>&1
  echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
done
