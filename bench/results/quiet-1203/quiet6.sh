#!/bin/bash
OUT=/work/main/bench/results/quiet-1203
while pgrep -f /tmp/quiet5.sh > /dev/null; do sleep 2; done
cd /tmp/lat-final
echo "== latency final 2000 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 20000 --live-seconds 40 --rate 2000 --out $OUT/latency-final-2000.json > $OUT/latency-final-2000.log 2>&1
echo "rc $? $(date -u +%T)"
echo "== latency final half (live-shaped backlog) $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live --live-seconds 40 --load 0.5 --out $OUT/latency-final-half.json > $OUT/latency-final-half.log 2>&1
echo "rc $? $(date -u +%T)"
