#!/bin/bash
set -u
OUT=/work/main/bench/results/latency-r27
while pgrep -f inst.sh >/dev/null; do sleep 2; done
for r in 1 2 3; do
for t in A B; do
  [ $r = 2 ] && t=$( [ $t = A ] && echo B || echo A )
  cd /tmp/r27/ab$t
  echo "== $t r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live-stamped --live-seconds 45 --rate 1400 --out $OUT/r1400-ab$t-r$r.json > $OUT/r1400-ab$t-r$r.log 2>&1
  echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
done
