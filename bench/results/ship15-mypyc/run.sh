#!/usr/bin/env bash
# The driver of bench/README.md's "Shipping the compiled stages (issue 15, branch ship15)": pure and compiled
# trees of the same commit (git archive HEAD into /tmp/ship15-pure and /tmp/ship15-comp, .cache linked, the
# second compiled with scripts/build_compiled.sh), the pipeline bench alternated, then worker_cpu_bench pairs
# run at the same time pinned to the same core. Load sampled every 5 s into load.txt.
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
PY=/work/main/.venv/bin/python
(while true; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 5; done) >>"$OUT/load.txt" &
sampler=$!
trap 'kill $sampler' EXIT

for round in 1 2 3; do
  for tree in pure comp; do
    (cd /tmp/ship15-$tree && $PY bench/pipeline_bench.py --events 100000 \
      --out "$OUT/pipeline-$tree-run$round.json" >"$OUT/pipeline-$tree-run$round.log" 2>&1)
  done
done

to_json() {  # worker_cpu_bench's printed lines -> JSON
  $PY - "$1" "$2" <<'PYEOF'
import json, re, sys
text = open(sys.argv[1]).read()
runs = [float(m) for m in re.findall(r"repeat \d+: .*?, ([\d.]+) µs/event", text)]
best = float(re.search(r"best: ([\d.]+) µs/event", text).group(1))
json.dump({"command": sys.argv[2], "us_per_event": runs, "best_us_per_event": best,
           "left": re.search(r"left: (.*)", text).group(1)}, open(sys.argv[1].removesuffix(".log") + ".json", "w"), indent=2)
PYEOF
}
# The workload once (both trees read the same cache), then each pair at the same time on core 1.
(cd /tmp/ship15-pure && $PY bench/worker_cpu_bench.py --events 30000 --repeats 1 --stages-only \
  --workload /tmp/ship15-wl30k.pickle >"$OUT/worker-warmup.log" 2>&1)
for bench in "stages:--stages-only --repeats 3" "runtime:--repeats 2" "triggers:--triggers --repeats 2"; do
  name=${bench%%:*}
  args=${bench#*:}
  for pair in 1 2 3; do
    pids=()
    for tree in pure comp; do
      # shellcheck disable=SC2086  # $args: several arguments
      (cd /tmp/ship15-$tree && taskset -c 1 $PY bench/worker_cpu_bench.py --events 30000 $args \
        --workload /tmp/ship15-wl30k.pickle >"$OUT/worker-$name-$tree-pair$pair.log" 2>&1) &
      pids+=($!)
    done
    wait "${pids[@]}"
    for tree in pure comp; do
      to_json "$OUT/worker-$name-$tree-pair$pair.log" "taskset -c 1 bench/worker_cpu_bench.py --events 30000 $args"
    done
  done
done
