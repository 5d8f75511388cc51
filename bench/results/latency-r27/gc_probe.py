"""GC pauses in the live mode of live_cpu_bench (run from the repo root): GC0=20000 python bench/results/latency-r27/gc_probe.py"""
import gc, sys, time, collections
sys.argv = ["live_cpu_bench.py", "--customers", "8000", "--repeats", "2", "--modes", "live"]
sys.path.insert(0, "bench")
import live_cpu_bench as b
import os
if os.environ.get("GC0"):
    b.GC_THRESHOLDS = (int(os.environ["GC0"]), int(os.environ.get("GC1", "20")), 100)

state = {"t": None, "n": 0, "shown": 0, "pauses": []}
def cb(phase, info):
    if phase == "start":
        state["t"] = time.perf_counter()
    elif state["t"] is not None:
        d = time.perf_counter() - state["t"]
        state["pauses"].append((info["generation"], d))
        state["t"] = None
        if d > 0.01 and state["shown"] < 0:
            state["shown"] += 1
            gc.callbacks.remove(cb)
            objs = gc.get_objects(0) + gc.get_objects(1)
            # after the collection the survivors moved to gen1: what is there now
            c = collections.Counter(type(o).__name__ for o in gc.get_objects(1))
            big = sorted(((len(o), type(o).__name__) for o in gc.get_objects(1) if isinstance(o, (dict, list, set, tuple, collections.OrderedDict, collections.deque))), reverse=True)[:8]
            print(f"gen{info['generation']} {d*1000:.1f} ms; gen1 now {sum(c.values())} objects: {c.most_common(8)}; biggest {big}", flush=True)
            gc.callbacks.append(cb)
gc.callbacks.append(cb)
b.main()
ps = state["pauses"]
for g in (0, 1, 2):
    ds = sorted(d for gg, d in ps if gg == g)
    if ds:
        print(f"gen{g}: {len(ds)} collections, median {ds[len(ds)//2]*1000:.1f} ms, max {ds[-1]*1000:.1f} ms")
