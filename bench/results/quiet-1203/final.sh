#!/bin/bash
# After CI, machine quiet: scale-out on the final tree (27b3061), then pipeline_bench before (363aa2e) / after
# (27b3061), pure, alternated, events per worker CPU-s.
OUT=/work/main/bench/results/quiet-1203
cd /tmp/lat-final
echo "== scale final $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 900 .venv/bin/python bench/scale_bench.py --events 200000 --rounds 2 --out $OUT/scale-200k-final.json > $OUT/scale-200k-final.log 2>&1
echo "rc $? $(date -u +%T)"
for round in 1 2 3; do
  order="before final"; [ $((round % 2)) -eq 0 ] && order="final before"
  for t in $order; do
    [ $t = before ] && tree=/tmp/pb-before || tree=/tmp/lat-final
    f=$OUT/pipeline/$round-$t
    ( while true; do echo "$(date -u +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done ) > "$f.loadavg" &
    sampler=$!
    echo "== pipeline $t round $round $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $tree && timeout 600 .venv/bin/python bench/pipeline_bench.py --events 100000 --out "$f.json") > "$f.log" 2>&1
    echo "rc $? $(date -u +%T)"
    kill $sampler
  done
done
