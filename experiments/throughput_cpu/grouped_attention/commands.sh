# the issue-8 measurements, on a quiet machine (between campaign arms)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false ESAMP_DATA_DIR=/work/shared/data
PY=/work/main/.venv/bin/python
real() {  # $1 = checkout, $2 = out dir
  cd $1 && /usr/bin/time -v $PY run.py model=qwen2.5-coder-0.5b-pypi task=math500 "task.subset={ids_file:experiments/math500_qwen05/problems.json}" \
    task.limit=20 task.max_new_tokens=512 seed=0 generation.batch_prompts=8 sampler=temperature sampler.n=16 hydra.run.dir=$2 > $2.log 2>&1
}
echo "real new start $(date -Is)"; real /tmp/wt_new /tmp/bench8/real_new
echo "fixed new start $(date -Is)"
cd /tmp/wt_new && $PY scripts/bench_generate.py --model qwen2.5-coder-0.5b-pypi --prompts 8 --n 16 --new-tokens 512 --arms loop --repeats 1 --warmup 0 --json /tmp/bench8/fixed_new.json > /tmp/bench8/fixed_new.log 2>&1
echo "real old start $(date -Is)"; real /tmp/wt_old /tmp/bench8/real_old
echo "done $(date -Is)"
