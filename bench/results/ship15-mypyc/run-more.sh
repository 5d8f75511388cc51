#!/usr/bin/env bash
# Three more alternated pipeline rounds (compiled first this time): every compiled run of run.sh saw the
# worker ready only after 34-66 % of the drain, so its CPU window missed that work (excluded, as in "Cost of
# exactly-once"). Same trees, same command as run.sh. Arguments: the rounds (default 4 5 6; then run with
# 7 8, since compiled run 5 was seen ready late too).
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
PY=/work/main/.venv/bin/python
(while true; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done) >>"$OUT/load.txt" &
sampler=$!
trap 'kill $sampler' EXIT
for round in ${*:-4 5 6}; do  # word-split on purpose: the rounds
  for tree in comp pure; do
    (cd /tmp/ship15-$tree && $PY bench/pipeline_bench.py --events 100000 \
      --out "$OUT/pipeline-$tree-run$round.json" >"$OUT/pipeline-$tree-run$round.log" 2>&1)
  done
done
