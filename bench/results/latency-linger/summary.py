"""Latency JSONs -> one line per run (backlog rate, live rate, caught up) and p50/p90/p99/max per consequence: python3 summary.py *.json"""
import json, sys
for f in sys.argv[1:]:
    try: d = json.load(open(f))
    except Exception as e: print(f, "ERR", e); continue
    L = d["latency"]; live = d["live"]
    def q(k):
        v = L.get(k, {}); return "/".join(str(round(v.get(x, -1))) for x in ("p50_ms", "p90_ms", "p99_ms", "max_ms")) + f" n={v.get('count')}"
    print(f.split("/")[-1], "backlog", round(d["backlog"]["sustained_rate"]), "live", round(live["rate"]), "caught_up", round(live["caught_up_s"], 2))
    for k in L:
        if isinstance(L[k], dict) and "p50_ms" in L[k]: print("   ", k, q(k))
