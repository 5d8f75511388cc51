#!/bin/bash
OUT=/work/main/bench/results/quiet-1203
while pgrep -f /tmp/drain.sh > /dev/null; do sleep 2; done
cd /tmp/lat-fix
for r in 1 2; do
echo "== latency fix 1000 r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 20000 --live-seconds 40 --rate 1000 --out $OUT/latency-fix-1000-r$r.json > $OUT/latency-fix-1000-r$r.log 2>&1
echo "rc $? $(date -u +%T)"
done
