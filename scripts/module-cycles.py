"""Fail when the top-level modules of a crate import each other in a circle.

Usage: scripts/module-cycles.py crates/*/src

A module is a file or folder directly under `src/`; an import is any
`crate::<module>` path (or `use crate::{<module>, ...}`) outside comments
and `#[cfg(test)] mod tests`. Each cycle is printed with one file per edge.
"""
import collections
import os
import re
import sys


def cycles(root):
    mods={}
    for f in os.listdir(root):
        name=f[:-3] if f.endswith('.rs') else f
        if name in('lib','main') or not (f.endswith('.rs') or os.path.isdir(os.path.join(root,f))):continue
        mods[name]=os.path.join(root,f)
    g=collections.defaultdict(set); why={}
    for name,f in mods.items():
        files=[f] if f.endswith('.rs') else [os.path.join(dp,x) for dp,_,fs in os.walk(f) for x in fs if x.endswith('.rs')]
        for fp in files:
            s=open(fp).read()
            s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*','',s,flags=re.S)
            s='\n'.join(l for l in s.split('\n') if not l.strip().startswith('//'))
            for m in re.findall(r'crate::(\w+)',s)+[x for grp in re.findall(r'use crate::\{([^}]*)\}',s) for x in re.findall(r'^\s*(\w+)',grp,flags=re.M)]:
                if m!=name and m in mods:
                    g[name].add(m); why.setdefault((name,m),fp)
    sys.setrecursionlimit(10000)
    index={};low={};st=[];on=set();res=[];i=[0]
    def sc(v):
        index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
        for w in g[v]:
            if w not in index: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            c=[]
            while True:
                w=st.pop();on.discard(w);c.append(w)
                if w==v:break
            if len(c)>1:res.append(c)
    for v in list(mods):
        if v not in index: sc(v)
    for c in res:
        print(f'{root}: modules import each other in a circle: {" ".join(sorted(c))}')
        for a in c:
            for b in c:
                if b in g[a]: print(f'   {a} -> {b} ({why[(a,b)]})')
    return res


found = [c for root in sys.argv[1:] for c in cycles(root)]
sys.exit(1 if found else 0)
