#!/usr/bin/env bash
# Engine agreement (issue 23): the same arms on both engines, 20 MATH-500 problems x 16, Qwen2.5-Coder-0.5B,
# 512 new tokens, seed 0. hf arms run in .venv, vllm arms in .venv-vllm (make install install-qwen install-vllm).
# Arms run one after another into results/engines_agreement_qwen05/<arm>; a killed run resumes when restarted.
#   nohup bash experiments/engines_cpu/run_agreement.sh > results/engines_agreement_qwen05.log 2>&1 &
# Then, per sampler, vllm against hf (paired over problems; an interval containing 0 at every k = agreement):
#   .venv/bin/python scripts/compare.py results/engines_agreement_qwen05/vllm_esamp \
#       --baseline results/engines_agreement_qwen05/hf_esamp --out experiments/engines_cpu/agreement_esamp
#   .venv/bin/python scripts/compare.py results/engines_agreement_qwen05/vllm_temperature \
#       --baseline results/engines_agreement_qwen05/hf_temperature --out experiments/engines_cpu/agreement_temperature
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=engines_agreement_qwen05
COMMON=(model=qwen2.5-coder-0.5b-pypi task=math500 task.limit=20 task.max_new_tokens=512 seed=0
        generation.batch_prompts=8)
declare -A ARMS=(
  [hf_esamp]="engine=hf sampler=esamp sampler.n=16"
  [hf_temperature]="engine=hf sampler=temperature sampler.n=16"
  [vllm_esamp]="engine=vllm sampler=esamp sampler.n=16"
  [vllm_temperature]="engine=vllm sampler=temperature sampler.n=16"
)
PY=.venv/bin/python ORDER=(hf_esamp hf_temperature)
run_campaign
PY=.venv-vllm/bin/python ORDER=(vllm_esamp vllm_temperature)
run_campaign
