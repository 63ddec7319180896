#!/usr/bin/env python3
"""Fails if two modules of src/ import each other, directly or around a circle.

A module is a file (a `mod.rs` names its folder). An edge is a `use` (or a
path) naming an item of another module: `crate::…`, `super::…`, and names the
crate root re-exports, resolved to where they are defined. A parent's use of
its own children is structure, not an edge. Test modules are left out.
`-v` prints every module's edges.
"""
import re, os, sys, itertools
import pathlib
root=str(pathlib.Path(__file__).resolve().parent.parent / 'src')
files={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if f.endswith('.rs'):
            p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3]
            parts=rel.split('/')
            if parts[-1] in ('mod','lib'): parts=parts[:-1]
            files['::'.join(parts)]=open(p).read()
mods=set(files)
# root re-exports: name -> module
lib=files['']
rexp={}
for m in re.finditer(r'pub use crate::\{(.*?)\};', lib, re.S):
    body=m.group(1)
    # crude: find "mod::{names}" or "mod::name"
    for g in re.finditer(r'(\w+)::\{([^}]*)\}', body):
        for n in re.findall(r'\w+', g.group(2)): rexp[n]=g.group(1)
    for g in re.finditer(r'(\w+)::(\w+)\s*[,}]', body+'}'):
        rexp[g.group(2)]=g.group(1)
for m in re.finditer(r'pub use crate::(\w+)::(\w+);', lib): rexp[m.group(2)]=m.group(1)
def strip_tests(src):
    i=src.find('#[cfg(test)]\nmod tests')
    return src if i<0 else src[:i]
def strip_comments(src):
    return '\n'.join(l for l in src.split('\n') if not l.strip().startswith('//'))
def resolve(cur, path):
    # path like crate::a::b::C or super::x
    segs=path.split('::')
    if segs[0]=='crate': base=[]; segs=segs[1:]
    elif segs[0]=='super':
        base=cur.split('::') if cur else []
        while segs and segs[0]=='super': base=base[:-1]; segs=segs[1:]
    elif segs[0]=='self': base=cur.split('::') if cur else []; segs=segs[1:]
    else: return None
    # longest module prefix
    best='::'.join(base)
    for i in range(len(segs)+1):
        cand='::'.join(base+segs[:i])
        if cand in mods: best=cand
    if best=='' and segs:
        if segs[0] in rexp: best=rexp[segs[0]]
    return best
def expand_use(body):
    # expand nested braces into flat paths
    out=[]
    def rec(prefix, s):
        items=[];d=0;cur=''
        for ch in s:
            if ch=='{': d+=1
            if ch=='}': d-=1
            if ch==',' and d==0: items.append(cur.strip()); cur=''
            else: cur+=ch
        if cur.strip(): items.append(cur.strip())
        for it in items:
            m=re.match(r'^([\w:]*?)::\{(.*)\}$', it, re.S)
            if m: rec(prefix+m.group(1)+'::', m.group(2))
            else: out.append(prefix+it.split(' as ')[0])
    rec('', body)
    return out
edges={}
for mod,src in files.items():
    src=strip_comments(strip_tests(src))
    deps=set()
    for m in re.finditer(r'\buse\s+((?:crate|super|self)(?:::\w+)*)(?:::\{(.*?)\})?;', src, re.S):
        head=m.group(1); body=m.group(2)
        paths=[head] if body is None else [head+'::'+p for p in expand_use(body)]
        for p in paths:
            r=resolve(mod,p)
            if r is not None: deps.add(r)
    for m in re.finditer(r'\b((?:crate|super)(?:::\w+)+)', src):
        r=resolve(mod,m.group(1))
        if r is not None: deps.add(r)
    deps.discard(mod)
    # a parent's use of its own child is structure, not a cycle
    deps={d for d in deps if not d.startswith(mod+'::') or mod==''}
    edges[mod]=deps
# drop lib root
def scc(nodes, edges):
    index={};low={};st=[];on=set();res=[];i=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        index[v]=low[v]=i[0]; i[0]+=1; st.append(v); on.add(v)
        for w in edges.get(v,()):
            if w not in index: sc(w); low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=st.pop(); on.discard(w); comp.append(w)
                if w==v: break
            res.append(comp)
    for v in nodes:
        if v not in index: sc(v)
    return res
nodes=[m for m in files if m!='']
E={m:{d for d in edges[m] if d!=''} for m in nodes}
comps=[c for c in scc(nodes,E) if len(c)>1]
print("file-level cycles:",len(comps))
for c in comps: print("  ",sorted(c))
# top-level module granularity
top=lambda m: m.split('::')[0]
T={}
for m in nodes:
    for d in E[m]:
        if top(d)!=top(m): T.setdefault(top(m),set()).add(top(d))
tn=sorted({top(m) for m in nodes})
tc=[c for c in scc(tn,T) if len(c)>1]
print("top-level cycles:",len(tc))
for c in tc: print("  ",sorted(c))
if '-v' in sys.argv:
    for m in sorted(E): print(m,'->',sorted(E[m]))
sys.exit(1 if comps or tc else 0)
