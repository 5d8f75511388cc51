#!/bin/bash
OUT=/work/main/bench/results/quiet-1203
while pgrep -f /tmp/quiet4.sh > /dev/null; do sleep 2; done
cd /tmp/lat-final
for l in 0.02 0.1; do
echo "== latency final 1000 linger $l $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 20000 --live-seconds 40 --rate 1000 --worker-setting output_linger_s=$l --out $OUT/latency-final-1000-linger$l.json > $OUT/latency-final-1000-linger$l.log 2>&1
echo "rc $? $(date -u +%T)"
done
