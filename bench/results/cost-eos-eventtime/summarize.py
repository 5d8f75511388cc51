import json, glob, os, re, statistics as st
D = "/work/wt/costbench/bench/results/cost-eos-eventtime"
rows = []
for f in sorted(glob.glob(f"{D}/*.json")):
    if f.endswith("loadavg.json") or f.endswith("summary.json"):
        continue
    d = json.load(open(f))
    p = d.get("pipeline")
    if not p:
        continue
    name = os.path.basename(f)[:-5]
    la = [tuple(map(float, l.split()[1:])) for l in open(f[:-5] + ".loadavg") if len(l.split()) == 4]
    # the drain window: finished_at is the end; take samples of the whole run (mean and max of 1-min avg)
    lines = open("/tmp/costbench/" + name + ".log").read()
    import datetime as dt
    def t(pat):
        m = re.search(r"^(\S+ \S+),\d+ INFO bench.pipeline: " + pat, lines, re.M)
        return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    t0, t1 = t("worker pid"), t("pipeline:")
    stamps = [tuple(map(float, l.split())) for l in open(f[:-5] + ".loadavg") if len(l.split()) == 4]
    l1 = [x[1] for x in stamps if t0 - 5 <= x[0] <= t1 + 5]
    rate = p["sustained_rate"]; cpu = p["worker_cpu_seconds"]; ev = d["config"]["events"]
    rows.append(dict(run=name, events=ev, sustained_rate=round(rate), overall_rate=round(p["overall_rate"]),
                     drained_s=round(p["drained_s"], 1), worker_cpu_s=cpu, events_per_worker_cpu_s=round(ev / cpu),
                     passthrough=round(d["passthrough"]["sustained_rate"]), worker_cpu_share=round(p["worker_cpu_share"], 2), other_cpu_share=round(p["other_cpu_share"], 2), worker_settings=d["config"]["worker_settings"],
                     load1_mean=round(st.mean(l1), 2) if l1 else None, load1_min=min(l1) if l1 else None,
                     load1_max=max(l1) if l1 else None, recovery_not_equal=len(d.get("recovery", {}).get("not_equal", {}) or {}),
                     latency_p50_s=d.get("latency", {}).get("p50_s"), latency_p99_s=d.get("latency", {}).get("p99_s"),
                     finished_at=d["finished_at"], ready_s=round(p['ready_s'],1), processed_at_first_sample=int(p['samples'][0][1]), valid=not (p['samples'][0][1] > 0.05 * ev and p['samples'][0][0] - p['ready_s'] < 1.5)))
for r in rows:
    print(r)
json.dump(rows, open(f"{D}/summary.json", "w"), indent=1)
by = {}
for r in rows:
    by.setdefault(r["run"].split("-", 1)[1], []).append(r)
for k, v in sorted(by.items()):
    print(k, "n=", len(v), "rate", [x["sustained_rate"] for x in v], "ev/cpu", [x["events_per_worker_cpu_s"] for x in v],
          "median ev/cpu", st.median(x["events_per_worker_cpu_s"] for x in v))
