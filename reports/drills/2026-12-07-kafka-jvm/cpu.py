import os,time,sys,collections
def snap():
    d={}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            st=open(f'/proc/{p}/stat').read()
            comm=st[st.index('(')+1:st.rindex(')')]
            f=st[st.rindex(')')+2:].split()
            cmd=open(f'/proc/{p}/cmdline').read().replace('\0',' ')[:200]
            d[p]=(int(f[11])+int(f[12]),comm,cmd)
        except Exception: pass
    return d
T=float(sys.argv[1]) if len(sys.argv)>1 else 10
a=snap(); time.sleep(T); b=snap()
hz=os.sysconf('SC_CLK_TCK')
agg=collections.Counter()
for p,(t,comm,cmd) in b.items():
    d=t-a.get(p,(t,))[0]
    if d<=0: continue
    key=comm
    if 'kafka.Kafka' in cmd: key='kafka '+cmd.split('server.properties')[0].split('/')[-2]
    elif comm.startswith('drill') or 'drill' in cmd: key='drill:'+' '.join(cmd.split()[1:3])
    agg[key]+=d
tot=sum(agg.values())
for k,v in agg.most_common(25): print(f"{v/hz/T*100:6.1f}% {k}")
print(f"{tot/hz/T*100:6.1f}% total (of 200%)")
