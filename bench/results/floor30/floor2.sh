#!/bin/bash
# Trees: /tmp/r30/base = git archive fa57545 with .venv linked; /tmp/r30/comp = the same, then PYTHON=.venv/bin/python scripts/build_compiled.sh
# The whole worker loop with fake Kafka (the runtime's own cost on top of the stages), pure and compiled.
for t in base comp; do
  cd /tmp/r30/$t
  for trig in "" "--triggers"; do
    echo "== $t runtime ${trig:-no-triggers} $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/python bench/worker_cpu_bench.py --events 200000 --repeats 2 $trig --workload /tmp/r30/wl200k.pickle | tail -3
  done
done
