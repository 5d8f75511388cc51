"""The figures of bench/README.md's "Shipping the compiled stages" from this directory's JSONs: per pipeline
run, events per worker CPU-s and whether the CPU window saw the whole drain; per worker_cpu_bench pair, best
µs per event of each tree. Writes summary.json and prints the tables' rows."""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
summary: dict[str, list] = {"pipeline": [], "worker": []}
for path in sorted(HERE.glob("pipeline-*-run*.json"), key=lambda p: (int(p.stem.split("run")[1]), p.stem)):
    run = json.loads(path.read_text())
    pipeline = run["pipeline"]
    first_time, first_count = pipeline["samples"][0]
    row = {
        "run": path.stem,
        "finished_at": run["finished_at"],
        "files": run["source_snapshot"]["files"],
        "sustained_rate": round(pipeline["sustained_rate"]),
        "worker_cpu_s": round(pipeline["worker_cpu_seconds"], 2),
        "events_per_worker_cpu_s": round(pipeline["processed"] / pipeline["worker_cpu_seconds"]),
        "ready_s": round(pipeline["ready_s"], 1),
        # Events the worker had processed when the bench first sampled it after ready: their CPU is outside
        # the window, so a run with many is excluded (as in "Cost of exactly-once").
        "processed_at_first_sample": int(first_count) if first_time < pipeline["ready_s"] + 1.0 else None,
        "excluded": first_time < pipeline["ready_s"] + 1.0 and first_count > 0,
        "worker_cpu_share": round(pipeline["worker_cpu_share"], 2),
        "other_cpu_share": round(pipeline["other_cpu_share"], 2),
        "passthrough_sustained": round(run["passthrough"]["sustained_rate"]),
    }
    summary["pipeline"].append(row)
    print(row)
for tree in ("pure", "comp"):
    kept = sorted(
        row["events_per_worker_cpu_s"]
        for row in summary["pipeline"]
        if row["run"].split("-")[1] == tree and not row["excluded"] and "kept" not in row["run"]
    )
    summary[f"pipeline_{tree}_events_per_worker_cpu_s"] = kept
    summary[f"pipeline_{tree}_median"] = statistics.median(kept)
    print(tree, "events per worker CPU-s (kept runs):", kept, "median", statistics.median(kept))
for path in sorted(HERE.glob("worker-*-pair*.json")):
    bench, tree, pair = path.stem.split("-")[1:]
    result = json.loads(path.read_text())
    summary["worker"].append({"bench": bench, "tree": tree, "pair": pair, **result})
for bench in ("stages", "runtime", "triggers"):
    rows = [row for row in summary["worker"] if row["bench"] == bench]
    pairs = sorted({row["pair"] for row in rows})
    best = {(row["pair"], row["tree"]): row["best_us_per_event"] for row in rows}
    print(bench, ", ".join(f"{best.get((p, 'comp'))} / {best.get((p, 'pure'))}" for p in pairs))
(HERE / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
