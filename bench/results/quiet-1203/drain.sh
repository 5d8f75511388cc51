#!/bin/bash
# Drain CPU of a live-shaped backlog (40,000 events), output_linger_s 0.05 (default) vs 0.5 (= flushes by the
# interval only), in the tree before the 'keeping up' fix (lat-after, e7d2029) and after it (lat-fix, 406b723).
OUT=/work/main/bench/results/quiet-1203
for spec in "after 0.05" "after 0.5" "fix 0.05" "fix 0.5" "fix 0.5" "fix 0.05" "after 0.5" "after 0.05"; do
  set -- $spec; tree=$1; linger=$2
  n=$(ls $OUT | grep -c "^drain2-$tree-$linger-.*json")
  f=$OUT/drain2-$tree-$linger-$((n+1))
  cd /tmp/lat-$tree
  echo "== $tree $linger $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  timeout 600 .venv/bin/python bench/latency_bench.py --backlog-events 40000 --backlog-kind live --live-seconds 5 --rate 100 \
    --worker-setting output_linger_s=$linger --out $f.json > $f.log 2>&1
  echo "rc $? $(date -u +%T) $(python3 -c "import json;d=json.load(open('$f.json'));print(d['backlog'])")"
done
