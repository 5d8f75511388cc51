#!/bin/bash
set -u
R=/work/main/bench/results/state-1m/round7
while pgrep -f lat5.sh >/dev/null; do sleep 2; done
cd /tmp/r27/m1
echo "== 1M $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 3600 .venv/bin/python bench/state_bench.py --profiles 1000000 --out $R/round7-3e034fd.json > /tmp/r27/m1.log 2>&1 &
sleep 3
/tmp/r27/sample1s.sh $R/round7-3e034fd-rss-1s.tsv streamcdp-state &
/tmp/r27/scrape.sh $R/round7-3e034fd-metrics.txt &
wait
echo "rc $? $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
