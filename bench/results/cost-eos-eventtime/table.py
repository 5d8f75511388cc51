import json, statistics as st
rows = json.load(open("/work/wt/costbench/bench/results/cost-eos-eventtime/summary.json"))
rows.sort(key=lambda r: r["finished_at"])
label = {"a": "(a) df09cda^, at_least_once", "b": "(b) main, at_least_once", "c": "(c) main, exactly_once", "d": "(d) df09cda, at_least_once"}
print("| # | run | finished (UTC) | events/s (10–90 %) | worker CPU-s | events per worker CPU-s | worker / other CPU (cores) | load 1-min during drain | worker ready after (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for i, r in enumerate(rows, 1):
    k = r["run"].split("-")[1]
    note = "" if r["valid"] else " (excluded: %s events already processed when ready was seen, their CPU is outside the window)" % format(r["processed_at_first_sample"], ",")
    print(f"| {i} | {label[k]} | {r['finished_at'][11:19]} | {r['sustained_rate']:,} | {r['worker_cpu_s']:.2f} | {r['events_per_worker_cpu_s']:,} | {r['worker_cpu_share']:.2f} / {r['other_cpu_share']:.2f} | {r['load1_min']:.1f}–{r['load1_max']:.1f} | {r['ready_s']}{note} |")
print()
print("Valid runs only:")
print("| run | n | events/s (median, range) | events per worker CPU-s (median, range) |")
print("|---|---|---|---|")
by = {}
for r in rows:
    if r["valid"]:
        by.setdefault(r["run"].split("-")[1], []).append(r)
for k in sorted(by):
    v = by[k]; a = [x["sustained_rate"] for x in v]; e = [x["events_per_worker_cpu_s"] for x in v]
    print(f"| {label[k]} | {len(v)} | {st.median(a):,.0f} ({min(a):,}–{max(a):,}) | {st.median(e):,.0f} ({min(e):,}–{max(e):,}) |")
