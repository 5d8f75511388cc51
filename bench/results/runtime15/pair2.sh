#!/bin/bash
# pair2.sh NAME BEFORE AFTER args... : both trees at once on core 1; outputs in /tmp/rt15/res/NAME-{before,after}.txt
N=$1; B=$2; A=$3; shift 3
(cd $B && taskset -c 1 /work/main/.venv/bin/python bench/worker_cpu_bench.py "$@" > /tmp/rt15/res/$N-before.txt 2>&1) &
(cd $A && taskset -c 1 /work/main/.venv/bin/python bench/worker_cpu_bench.py "$@" > /tmp/rt15/res/$N-after.txt 2>&1) &
wait
for t in before after; do echo "$N $t: $(grep -h best /tmp/rt15/res/$N-$t.txt | sed 's/ = .*//') | $(grep -h '^repeat' /tmp/rt15/res/$N-$t.txt | sed 's/.*CPU-s, //;s/ µs\/event//' | tr '\n' ' ') | $(grep -h left /tmp/rt15/res/$N-$t.txt)"; done
