#!/usr/bin/env bash
# The HumanEval campaign (issue 10, part A): four arms on all 164 problems, n = 16, 512 new tokens, seed 0,
# Qwen2.5-Coder-0.5B-Instruct (offline: make install-qwen), the sandboxed grader (chat prompt, 5 s per check).
# Arms run one after another, each into its fixed folder results/humaneval_qwen05/<arm>; a killed run resumes
# where it stopped when this script is started again (finished arms are skipped: results.json exists).
#   nohup bash experiments/humaneval_qwen05/run_arms.sh [ARM ...] > results/humaneval_qwen05/campaign.log 2>&1 &
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=humaneval_qwen05
COMMON=(model=qwen2.5-coder-0.5b-pypi task=humaneval task.max_new_tokens=512 seed=0 generation.batch_prompts=8)
declare -A ARMS=(
  [temperature_t1]="sampler=temperature sampler.n=16"
  [esamp_b025]="sampler=esamp sampler.n=16"
  [min_p01]="sampler=min_p sampler.n=16 sampler.min_p=0.1 sampler.temperature=1.0"
  [temperature_t07]="sampler=temperature sampler.n=16 sampler.temperature=0.7"
  # follow-up control (registered 2026-12-05, see the README): T = 1/(1+beta), ESamp with a Distiller that knows nothing
  [temperature_t08]="sampler=temperature sampler.n=16 sampler.temperature=0.8"
  # mechanism arms (issue 22, registered 2026-12-05 before any ran): the paper's Distiller with lr 0 (the fixed
  # transform without learning); run by name
  [esamp_frozen_b025]="sampler=esamp sampler.n=16 sampler.distiller.lr=0"
  # the fast setting chosen by experiments/distiller_learning's registered rule (an EXTENSION: prompt-initialised bias)
  [esamp_fast_b025]="sampler=esamp sampler.n=16 sampler.distiller.input_norm=rms sampler.distiller.output_bias=prompt sampler.distiller.eps=1e-8 sampler.distiller.grad_clip=0"
  # the paper's remaining baselines (issue 26, registered 2026-12-06 before any ran); run by name
  [override_l08]="sampler=override sampler.n=16"
  [self_review_t1]="sampler=temperature sampler.n=16 task.prompt_style=self_review"
)
ORDER=(temperature_t1 esamp_b025 min_p01 temperature_t07 temperature_t08)
run_campaign "$@"
