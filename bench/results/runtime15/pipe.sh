#!/bin/bash
# alternated pipeline_bench runs; JSON + log per run in /tmp/rt15/res
for i in 1 2 3; do
  for pair in "comp-before:/tmp/rt15_before_c" "comp-after:/tmp/rt15_after_c"; do
    name=${pair%%:*}; dir=${pair#*:}
    if [ $((i % 2)) -eq 0 ]; then :; fi
    (cd $dir && /work/main/.venv/bin/python bench/pipeline_bench.py --events 100000 --out /tmp/rt15/res/pipeline-$name-run$i.json > /tmp/rt15/res/pipeline-$name-run$i.log 2>&1)
    echo "$(date -u +%T) $name run$i rc=$? $(uptime | sed 's/.*load/load/')"
  done
done
for i in 1 2 3; do
  for pair in "pure-after:/tmp/rt15_after" "pure-before:/tmp/rt15_before"; do
    name=${pair%%:*}; dir=${pair#*:}
    (cd $dir && /work/main/.venv/bin/python bench/pipeline_bench.py --events 100000 --out /tmp/rt15/res/pipeline-$name-run$i.json > /tmp/rt15/res/pipeline-$name-run$i.log 2>&1)
    echo "$(date -u +%T) $name run$i rc=$? $(uptime | sed 's/.*load/load/')"
  done
done
