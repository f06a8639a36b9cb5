#!/usr/bin/env bash
# Long answers (issue 22, section 2): MATH-500 levels 4-5 (problems.json: 30 per level, seed 0), n = 16,
# 2048 new tokens, seed 0, Qwen2.5-Coder-0.5B-Instruct (offline: make install-qwen). The point: answers long
# enough that the Distiller has hundreds of decode steps after its plateau (it leaves ~0.99 relative error only
# after 50-120 steps). Arms run one after another into results/math500_long/<arm>; a killed arm resumes.
#   nohup bash experiments/math500_long/run_arms.sh [ARM ...] > results/math500_long/campaign.log 2>&1 &
# The budget probe (5 of the 60 problems, T 1; run it first, by name): run_arms.sh probe_t1
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=math500_long
COMMON=(model=qwen2.5-coder-0.5b-pypi task=math500 task.max_new_tokens=2048 seed=0 generation.batch_prompts=8)
IDS="task.subset={ids_file:experiments/math500_long/problems.json}"
declare -A ARMS=(
  [probe_t1]="task.subset={ids_file:experiments/math500_long/probe.json} sampler=temperature sampler.n=16"
  [temperature_t1]="$IDS sampler=temperature sampler.n=16"
  [temperature_t08]="$IDS sampler=temperature sampler.n=16 sampler.temperature=0.8"
  [esamp_b025]="$IDS sampler=esamp sampler.n=16"
  # the fast setting chosen by experiments/distiller_learning's registered rule (an EXTENSION: prompt-initialised bias)
  [esamp_fast_b025]="$IDS sampler=esamp sampler.n=16 sampler.distiller.input_norm=rms sampler.distiller.output_bias=prompt sampler.distiller.eps=1e-8 sampler.distiller.grad_clip=0"
  # registered with the four, run last: the frozen Distiller (lr 0), the decision rule's second control
  [esamp_frozen_b025]="$IDS sampler=esamp sampler.n=16 sampler.distiller.lr=0"
)
ORDER=(temperature_t1 esamp_b025 esamp_fast_b025 temperature_t08 esamp_frozen_b025)
run_campaign "$@"
