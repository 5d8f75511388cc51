#!/bin/bash
# pipeline bench A/B: batched outputs (pB, 4e8fa4b) against per-record send (pA, 480757a), alternated
set -u
R=/work/main/bench/results/batched-outputs
mkdir -p $R
while pgrep -f m1.sh >/dev/null; do sleep 2; done
for r in 1 2; do
for t in pA pB; do
  [ $r = 2 ] && t=$( [ $t = pA ] && echo pB || echo pA )
  cd /tmp/r27/$t
  echo "== $t r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 .venv/bin/python bench/pipeline_bench.py --events 200000 --live-events 2000 --out $R/pipeline-$t-r$r.json > $R/pipeline-$t-r$r.log 2>&1
  echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
done
for r in 1; do
for t in pA pB; do
  cd /tmp/r27/$t
  echo "== latency $t r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live-stamped --live-seconds 45 --rate 1400 --out $R/latency-$t-r$r.json > $R/latency-$t-r$r.log 2>&1
  echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
done
