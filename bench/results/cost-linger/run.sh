#!/bin/bash
# Output linger cost: b (output_linger_s=0.5, i.e. flushes by commit_interval_s only, as before) and c (the default 0.05) alternated on one tree; load sampled every 5 s.
set -u
TREE=${TREE:-/tmp/lat-after}  # git archive e7d2029, with .venv and .cache linked
OUT=${OUT:-bench/results/cost-linger}
PAIRS=${PAIRS:-5}
mkdir -p "$OUT"
PY=/work/main/.venv/bin/python
for round in $(seq "${START:-1}" "$PAIRS"); do
  order="b c"; [ $((round % 2)) -eq 0 ] && order="c b"
  for run in $order; do
    case $run in
      b) g=0.5; name=b-linger500ms ;;
      c) g=0.05; name=c-linger50ms ;;
    esac
    f="$OUT/$round-$name"
    ( while true; do echo "$(date -u +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done ) > "$f.loadavg" &
    sampler=$!
    echo "$(date -u +%T) round $round run $run start"
    (cd "$TREE" && $PY bench/pipeline_bench.py --events 100000 --worker-setting output_linger_s=$g --out "$f.json") > "$f.log" 2>&1
    rc=$?
    kill $sampler
    echo "$(date -u +%T) round $round run $run rc=$rc"
  done
done
