"""Writing mechanism (issue 22): the paper arm against the frozen Distiller and the frozen arm against T 1, paired over
the 64 prompts (per-prompt Vendi, distinct-2, cosine, judge perplexity from each results.json; loop rate from the
samples), 10,000 bootstrap resamples. Run from the repo root: python experiments/writing_frontier/mechanism_pairs.py"""
import json, numpy as np
from esamp.analysis.runs import load_samples
from esamp.metrics.repetition import loops
from esamp.analysis.stats import bootstrap_interval
R='results/writing_frontier/'
def per_prompt(arm):
    d=json.load(open(R+arm+'/results.json'))['task_metrics']['per_prompt']
    rows=load_samples(R+arm); lp={}
    for r in rows: lp.setdefault(str(r['problem_id']),[]).append(loops(r['completion']))
    return d, {k:float(np.mean(v)) for k,v in lp.items()}
a,la=per_prompt('esamp_b025'); b,lb=per_prompt('esamp_frozen_b025'); t,lt=per_prompt('temperature_t1')
ids=sorted(set(a)&set(b)&set(t)); print(len(ids), list(a[ids[0]].keys()))
for key in ['vendi','distinct_2','pairwise_cosine','perplexity']:
    if key not in a[ids[0]]: continue
    for nm,o in [('paper - frozen',b),('frozen - T1',None)]:
        if o is None: x=np.array([b[i][key]-t[i][key] for i in ids])
        else: x=np.array([a[i][key]-o[i][key] for i in ids])
        lo,hi=bootstrap_interval(x[:,None],10000,0); print(f'{key:16s} {nm:15s} {x.mean():+.3f} [{lo[0]:+.3f}, {hi[0]:+.3f}]')
for nm,(p,q) in {'paper - frozen':(la,lb),'frozen - T1':(lb,lt)}.items():
    x=np.array([p[i]-q[i] for i in ids]); lo,hi=bootstrap_interval(x[:,None],10000,0); print(f'loop rate        {nm:15s} {x.mean():+.3f} [{lo[0]:+.3f}, {hi[0]:+.3f}]')
print('loop rates', np.mean(list(la.values())), np.mean(list(lb.values())), np.mean(list(lt.values())))
tel=json.load(open(R+'esamp_frozen_b025/results.json'))['sampler_telemetry']; c=tel['rel_error_norm_curve']; print('frozen rel err first128', np.mean(c[:128]), 'all', np.mean(c))
tel=json.load(open(R+'esamp_b025/results.json'))['sampler_telemetry']; c=tel['rel_error_norm_curve']; print('paper rel err first128', np.mean(c[:128]), 'all', np.mean(c))
