#!/bin/bash
# EOS v2 cost: b (at_least_once) and c (exactly_once, the default) alternated on one tree; load sampled every 5 s.
set -u
TREE=${TREE:-/tmp/tree_cost}  # git archive 126858d, with .venv and .cache linked
OUT=${OUT:-bench/results/cost-eosv2}
PAIRS=${PAIRS:-5}
mkdir -p "$OUT"
PY=/work/main/.venv/bin/python
for round in $(seq "${START:-1}" "$PAIRS"); do
  order="b c"; [ $((round % 2)) -eq 0 ] && order="c b"
  for run in $order; do
    case $run in
      b) g=at_least_once; name=b-at_least_once ;;
      c) g=exactly_once; name=c-exactly_once ;;
    esac
    f="$OUT/$round-$name"
    ( while true; do echo "$(date -u +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done ) > "$f.loadavg" &
    sampler=$!
    echo "$(date -u +%T) round $round run $run start"
    (cd "$TREE" && $PY bench/pipeline_bench.py --events 100000 --worker-setting processing_guarantee=$g --out "$f.json") > "$f.log" 2>&1
    rc=$?
    kill $sampler
    echo "$(date -u +%T) round $round run $run rc=$rc"
  done
done
