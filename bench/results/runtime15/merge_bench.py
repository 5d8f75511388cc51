"""Time streams.alignment alone on worker_cpu_bench's fetches (thread CPU per record)."""
import pickle, sys, time, gc
sys.path.insert(0, "."); sys.path.insert(0, "bench"); sys.path.insert(0, "tests/unit/test_streams")
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition
from fake_kafka import consumer_record
import streams.alignment as al
print(al.__file__)
msgs = pickle.load(open("/tmp/rt15_wl.pickle", "rb"))[:30000]
P = 4; part = DefaultPartitioner(); every = list(range(P))
topics = sorted({m.topic for m in msgs}) + ["b.streamcdp.profile-commands"]
queues = {}
for i, m in enumerate(msgs):
    p = part(m.key, every, every); tp = TopicPartition(m.topic, p)
    q = queues.setdefault(tp, []); q.append(consumer_record(tp.topic, p, len(q), m.key, m.value, timestamp=1_700_000_000_000 + i * 1000 // 70000))
batches = []; pos = dict.fromkeys(queues, 0)
while any(pos[tp] < len(q) for tp, q in queues.items()):
    b = {}; room = 5000
    for tp, q in queues.items():
        take = q[pos[tp]: pos[tp] + max(room // len(queues), 1)]
        if take: b[tp] = take; pos[tp] += len(take); room -= len(take)
    batches.append(b)
gc.collect(); gc.freeze(); gc.set_threshold(50_000, 20, 100)
best = 1e9
for rep in range(7):
    groups = {p: al.PartitionGroup([TopicPartition(t, p) for t in topics], ordered_topics=topics[:-1], max_idle_s=0.5) for p in every}
    stream = {}; n = 0
    t0 = time.thread_time()
    for b in batches:
        for tp, recs in b.items(): groups[tp.partition].add(tp, recs)
        for tp, run in al.merge(groups, stream, lambda tp: 0, 0.0):
            n += len(run); last = run[-1].timestamp; runs = globals().get("runs", 0) + 1; globals()["runs"] = runs
            if last > stream.get(tp.partition, -1): stream[tp.partition] = last
    dt = time.thread_time() - t0; best = min(best, dt)
print(runs, "runs"); print(f"{n} records, best {best / n * 1e6:.2f} µs/record")
