#!/bin/bash
# A last round after run3.sh: c b d. No start after 18:38 UTC.
set -u
while kill -0 "$(cat /tmp/costbench/driver3.pid)" 2>/dev/null; do sleep 2; done
OUT=/work/wt/costbench/bench/results/cost-eos-eventtime
PY=/work/main/.venv/bin/python
for spec in "7 c" "7 b" "7 d"; do
  set -- $spec; round=$1; run=$2
  now=$(date -u +%H%M); if [ "$now" -ge 1838 ]; then echo "time guard: stop before $round $run"; exit 0; fi
  extra=(); g=at_least_once; [ "$run" = c ] && g=exactly_once
  case $run in
    a) dir=/tmp/tree_before_et; name=a-before-eventtime-at_least_once ;;
    d) dir=/tmp/tree_at_et; name=d-eventtime-commit-at_least_once ;;
    b) dir=/work/wt/costbench; name=b-main-at_least_once; extra=(--worker-setting processing_guarantee=at_least_once) ;;
    c) dir=/work/wt/costbench; name=c-main-exactly_once; extra=(--worker-setting processing_guarantee=exactly_once) ;;
  esac
  f="$OUT/$round-$name"
  ( while true; do echo "$(date -u +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done ) > "$f.loadavg" &
  sampler=$!
  echo "$(date -u +%T) round $round run $run start"
  (cd "$dir" && STREAMCDP_PROCESSING_GUARANTEE=$g $PY bench/pipeline_bench.py --events 100000 "${extra[@]}" --out "$f.json") > "/tmp/costbench/$round-$name.log" 2>&1
  rc=$?
  kill $sampler
  echo "$(date -u +%T) round $round run $run rc=$rc"
done
