#!/bin/bash
# Alternated before (base = f739c00) / after (new = this stop's tree) measurements; each tree a git archive with .venv linked.
out=/tmp/r29/results; mkdir -p $out
for i in 1 2 3; do
  for t in base new; do
    cd /tmp/r29/$t
    echo "== $t round $i $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/python bench/step_bench.py 100 15 --in-context --audiences | tail -7
    .venv/bin/python bench/step_bench.py 100 15 --in-context | tail -7
    .venv/bin/python bench/trigger_replay.py replay /tmp/r29/calls_aud.pickle --repeats 5
    .venv/bin/python bench/trigger_replay.py replay /tmp/r29/calls.pickle --repeats 5
  done
done
