import re, sys, collections
path = sys.argv[1]; root = sys.argv[2] if len(sys.argv) > 2 else "run (streams/runtime.py"
top = int(sys.argv[3]) if len(sys.argv) > 3 else 60
incl = collections.Counter(); selfc = collections.Counter(); total = 0
def norm(f):
    f = re.sub(r":\d+\)", ")", f)
    f = re.sub(r"\(/.*?/(site-packages|lib/python3\.11)/", "(", f)
    return f
for line in open(path):
    line = line.rstrip("\n")
    if not line: continue
    stack, _, n = line.rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    idx = next((i for i, f in enumerate(frames) if root in f), None)
    if idx is None: continue
    frames = [norm(f) for f in frames[idx:]]
    total += n
    for f in set(frames): incl[f] += n
    selfc[frames[-1]] += n
print("total samples under root:", total)
print("--- inclusive")
for f, n in incl.most_common(top): print(f"{n/total*100:6.1f}%  {f}")
print("--- self")
for f, n in selfc.most_common(top): print(f"{n/total*100:6.1f}%  {f}")
