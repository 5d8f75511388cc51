"""Per-run figures of the output linger cost runs: events/s (10-90 %), worker CPU-s, events per worker CPU-s, CPU shares,
load during the drain, ready after; runs whose first sample after ready already counts >5 % of the backlog
are marked excluded when that sample came right after ready (ready was seen late: the CPU window misses that
work; a sample that came late because the worker answered /metrics late is kept), as in bench/README's earlier cost table."""
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = []
for f in sorted((p for p in out.glob("*.json") if p.name != "summary.json"), key=lambda p: (int(p.name.split("-")[0]), p.name)):
    if f.name == "summary.json":
        continue
    d = json.loads(f.read_text())
    p = d["pipeline"]
    first = p["samples"][0][1] if p["samples"] else 0
    load = [float(l.split()[1]) for l in (out / (f.stem + ".loadavg")).read_text().split("\n") if l.strip()]
    rows.append(dict(run=f.stem, events_per_s=round(p["sustained_rate"]), worker_cpu_s=p["worker_cpu_seconds"],
        events_per_cpu_s=round(p["processed"] / p["worker_cpu_seconds"]), worker_share=round(p["worker_cpu_share"], 2),
        other_share=round(p["other_cpu_share"], 2), load_1min=(min(load), max(load)) if load else None,
        ready_s=round(p["ready_s"], 1), processed_at_first_sample=first, excluded=first > 0.05 * p["processed"] and p["samples"][0][0] - p["ready_s"] < 0.5))
for r in rows:
    print(r)
summary = {}
for kind in ("b-linger500ms", "c-linger50ms"):
    kept = [r for r in rows if r["run"].endswith(kind) and not r["excluded"]]
    if kept:
        summary[kind] = dict(n=len(kept), events_per_cpu_s_median=statistics.median(r["events_per_cpu_s"] for r in kept),
            range=(min(r["events_per_cpu_s"] for r in kept), max(r["events_per_cpu_s"] for r in kept)),
            events_per_s_median=statistics.median(r["events_per_s"] for r in kept))
print(json.dumps(summary, indent=1))
(out / "summary.json").write_text(json.dumps(dict(runs=rows, medians=summary), indent=1))
