import os, re, sys, time, collections
def snap():
    d = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        try:
            if b'kafka.Kafka' not in open(f'/proc/{pid}/cmdline','rb').read(): continue
            for t in os.listdir(f'/proc/{pid}/task'):
                st = open(f'/proc/{pid}/task/{t}/stat').read()
                comm = st[st.index('(')+1:st.rindex(')')]
                f = st[st.rindex(')')+2:].split()
                d[(pid,t)] = (comm, int(f[11])+int(f[12]))
        except Exception: pass
    return d
secs = float(sys.argv[1])
a = snap(); time.sleep(secs); b = snap()
agg = collections.Counter()
for k,(comm,v) in b.items():
    v0 = a.get(k,(comm,0))[1]
    agg[re.sub(r'[-_ ]?\d+', '#', comm)] += v - v0
tot = sum(agg.values())
hz = os.sysconf('SC_CLK_TCK')
for n,v in agg.most_common(25):
    print(f"{100*v/hz/secs:6.1f}% {n}")
print(f"{100*tot/hz/secs:6.1f}% total java (3 nodes)")
