import sys, collections
path = sys.argv[1]
c = collections.Counter(); total = 0; allsamples = 0
def has(frames, s): return any(s in f for f in frames)
for line in open(path):
    stack, _, n = line.rstrip("\n").rpartition(" ")
    n = int(n); allsamples += n
    frames = stack.split(";")
    if not has(frames, "run (streams/runtime.py"): continue
    total += n
    if has(frames, "commit (streams/checkpoint"):
        if has(frames, "pending_records"): b = "checkpoint: changelog encoding (pending_records)"
        elif has(frames, "persist (streams/state_store"): b = "checkpoint: RocksDB write (persist)"
        elif has(frames, "fake_kafka"): b = "checkpoint: fake producer"
        else: b = "checkpoint: other (futures, evict, tally publish)"
    elif has(frames, "ingest (agents/pipeline"): b = "stage: ingest (validate, decode)"
    elif has(frames, "apply (agents/profiles"):
        sub = " [state_store get/put]" if has(frames, "streams/state_store.py") else ""
        if has(frames, "_apply (streams/runtime.py:504)"): b = "stage: apply, forwarded commands" + sub
        else: b = "stage: apply, inbound records" + sub
    elif has(frames, "merge (streams/alignment") or has(frames, "_buffer (streams/runtime") or "_process_aligned (streams/runtime.py:366)" in frames[-1]:
        b = "runtime: alignment (buffer, merge; compiled: the merge's time shows on _process_aligned's loop line)"
    elif has(frames, "_fire_due") or has(frames, "tick ("): b = "runtime: clock"
    elif has(frames, "observe (streams/lag"): b = "runtime: lag gauges"
    else:
        b = "runtime: per-record glue (process, _process_inbound, _apply, _forward, routing)"
    c[b] += n
print(f"samples under run: {total} of {allsamples}")
for b, n in sorted(c.items()): print(f"{n/total*100:6.1f}%  {b}")
