#!/bin/bash
OUT=/work/main/bench/results/quiet-1203
cd /tmp/lat-fix
echo "== scale $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 1200 .venv/bin/python bench/scale_bench.py --events 200000 --rounds 2 --out $OUT/scale-200k-loaded-after-ready.json > $OUT/scale-200k-loaded-after-ready.log 2>&1
echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
/tmp/drain.sh
