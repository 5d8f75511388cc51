"""Per pipeline_bench run: events per worker CPU-s and whether the CPU window saw the whole drain (as in ship15)."""
import json, statistics, sys
from pathlib import Path
HERE = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rt15/res")
rows = []
for path in sorted(HERE.glob("pipeline-*-run*.json"), key=lambda p: p.stat().st_mtime):
    run = json.loads(path.read_text()); p = run["pipeline"]
    first_time, first_count = p["samples"][0]
    excluded = first_time < p["ready_s"] + 1.0 and first_count > 0
    row = dict(run=path.stem.removeprefix("pipeline-"), finished=run["finished_at"][11:19], sustained=round(p["sustained_rate"]),
               cpu_s=round(p["worker_cpu_seconds"], 2), per_cpu_s=round(p["processed"] / p["worker_cpu_seconds"]),
               ready_s=round(p["ready_s"], 1), first_sample=int(first_count), excluded=excluded,
               worker_share=round(p["worker_cpu_share"], 2), other_share=round(p["other_cpu_share"], 2))
    rows.append(row)
    print(f"| {row['run']} | {row['finished']} | {row['sustained']:,} | {row['cpu_s']} | {row['per_cpu_s']:,} | {row['ready_s']} | {row['first_sample']}{' (excluded)' if excluded else ''} | {row['worker_share']} / {row['other_share']} |")
for tree in ("comp-before", "comp-after", "pure-before", "pure-after"):
    kept = sorted(r["per_cpu_s"] for r in rows if r["run"].startswith(tree + "-") and not r["excluded"])
    if kept: print(tree, kept, "median", statistics.median(kept))
(HERE / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
