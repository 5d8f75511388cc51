#!/bin/bash
# a b c alternated; load average sampled every 5 s during each run; no run starts after 18:36 UTC.
set -u
OUT=/work/wt/costbench/bench/results/cost-eos-eventtime
mkdir -p "$OUT"
PY=/work/main/.venv/bin/python
for round in 1 2 3; do
  for run in a b c; do
    now=$(date -u +%H%M); if [ "$now" -ge 1836 ]; then echo "time guard: stop before round $round run $run"; exit 0; fi
    case $run in
      a) dir=/tmp/tree_before_et; g=at_least_once; extra=(); name=a-before-eventtime-at_least_once ;;
      b) dir=/work/wt/costbench; g=at_least_once; extra=(--worker-setting processing_guarantee=at_least_once); name=b-main-at_least_once ;;
      c) dir=/work/wt/costbench; g=exactly_once; extra=(--worker-setting processing_guarantee=exactly_once); name=c-main-exactly_once ;;
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
done
