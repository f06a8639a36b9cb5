#!/usr/bin/env bash
# The paper's cell (experiment=paper_aime25): Qwen2.5-7B-Instruct from the hub, AIME 2025, n = 64, 8192 new
# tokens, vLLM. Needs a GPU (about 1,920 traces of up to 8k tokens per arm) and `make install-vllm
# VLLM_PKG=vllm==0.32.0`. Arms run one after another into results/paper_aime25/<arm> and resume when restarted.
#   PY=.venv-vllm/bin/python nohup bash experiments/paper_aime25/run_arms.sh > results/paper_aime25/campaign.log 2>&1 &
# On a SLURM cluster, each arm is one job: python run.py -m hydra/launcher=submitit_slurm experiment=paper_aime25 ...
source "$(dirname "$0")/../campaign.sh"
PY=${PY:-.venv-vllm/bin/python}
CAMPAIGN=paper_aime25
COMMON=(experiment=paper_aime25)
declare -A ARMS=(
  [temperature_t1]="sampler=temperature sampler.n=64"
  [esamp_b025]="sampler=esamp sampler.n=64"
  [temperature_t08]="sampler=temperature sampler.n=64 sampler.temperature=0.8"
  [esamp_frozen_b025]="sampler=esamp sampler.n=64 sampler.distiller.lr=0"
)
ORDER=(temperature_t1 esamp_b025 temperature_t08 esamp_frozen_b025)
run_campaign "$@"
