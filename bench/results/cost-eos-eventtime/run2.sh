#!/bin/bash
# After the a b c rounds: d (tree of df09cda, event-time order alone) alternated with a: d a d. No start after 18:38 UTC.
set -u
while kill -0 "$(cat /tmp/costbench/driver.pid)" 2>/dev/null; do sleep 2; done
OUT=/work/wt/costbench/bench/results/cost-eos-eventtime
PY=/work/main/.venv/bin/python
for spec in "4 d" "4 a" "5 d"; do
  set -- $spec; round=$1; run=$2
  now=$(date -u +%H%M); if [ "$now" -ge 1838 ]; then echo "time guard: stop before $round $run"; exit 0; fi
  case $run in
    a) dir=/tmp/tree_before_et; name=a-before-eventtime-at_least_once ;;
    d) dir=/tmp/tree_at_et; name=d-eventtime-commit-at_least_once ;;
  esac
  f="$OUT/$round-$name"
  ( while true; do echo "$(date -u +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done ) > "$f.loadavg" &
  sampler=$!
  echo "$(date -u +%T) round $round run $run start"
  (cd "$dir" && STREAMCDP_PROCESSING_GUARANTEE=at_least_once $PY bench/pipeline_bench.py --events 100000 --out "$f.json") > "/tmp/costbench/$round-$name.log" 2>&1
  rc=$?
  kill $sampler
  echo "$(date -u +%T) round $round run $run rc=$rc"
done
