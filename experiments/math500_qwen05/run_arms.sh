#!/usr/bin/env bash
# The MATH-500 campaign (issue 9): ten arms on the same 100 problems (problems.json: 20 per level, seed 0),
# n = 16, 512 new tokens, seed 0, Qwen2.5-Coder-0.5B-Instruct (offline: make install-qwen).
# Arms run one after another, each into its fixed folder results/math500_qwen05/<arm>; a killed run resumes
# where it stopped when this script is started again (finished arms are skipped: results.json exists).
#   nohup bash experiments/math500_qwen05/run_arms.sh [ARM ...] > results/math500_qwen05/campaign.log 2>&1 &
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=math500_qwen05
COMMON=(model=qwen2.5-coder-0.5b-pypi task=math500 "task.subset={ids_file:experiments/math500_qwen05/problems.json}"
        task.max_new_tokens=512 seed=0 generation.batch_prompts=8)
declare -A ARMS=(
  [temperature_t1]="sampler=temperature sampler.n=16"
  [esamp_b025]="sampler=esamp sampler.n=16"
  [esamp_b01]="sampler=esamp sampler.n=16 sampler.beta=0.1"
  [esamp_b1]="sampler=esamp sampler.n=16 sampler.beta=1.0"
  [naive_b05]="sampler=esamp sampler.n=16 sampler.fusion=subtract sampler.beta=0.5"  # ran as fusion=naive, its old name
  [noise_b025]="sampler=esamp sampler.n=16 sampler.error=noise"
  [shared_b025]="sampler=esamp sampler.n=16 sampler.state=shared"
  [temperature_t07]="sampler=temperature sampler.n=16 sampler.temperature=0.7"
  [min_p01]="sampler=min_p sampler.n=16 sampler.min_p=0.1 sampler.temperature=1.0"
  [fire]="sampler=fire sampler.n=16"
  # extra, clearly labelled arms (issue 9, Distiller dynamics): not in the default order; run by name
  [esamp_b025_lsum]="sampler=esamp sampler.n=16 sampler.distiller.loss_reduction=sum"
  [esamp_b025_zeroinit]="sampler=esamp sampler.n=16 +sampler.distiller.init_down=zero"
  # mechanism arms (issue 22, registered 2026-12-05 before any ran); run by name. noise_b025 is rerun into
  # noise_b025_rowkeyed: the committed noise_b025 drew one generator over the batch (not reproducible, issue 25)
  [temperature_t08]="sampler=temperature sampler.n=16 sampler.temperature=0.8"
  [noise_b025_rowkeyed]="sampler=esamp sampler.n=16 sampler.error=noise"
  # the fast setting chosen by experiments/distiller_learning's registered rule (an EXTENSION: prompt-initialised bias)
  [esamp_fast_b025]="sampler=esamp sampler.n=16 sampler.distiller.input_norm=rms sampler.distiller.output_bias=prompt sampler.distiller.eps=1e-8 sampler.distiller.grad_clip=0"
  # registered 2026-12-05 17:35 UTC, before it ran: the frozen Distiller (the paper's initialisation, lr 0), so that the
  # MATH-500 verdict has both controls of the decision rule (issue 22 registers it for HumanEval and writing)
  [esamp_frozen_b025]="sampler=esamp sampler.n=16 sampler.distiller.lr=0"
  # the paper's remaining baseline (issue 26, registered 2026-12-06 before it ran); run by name
  [override_l08]="sampler=override sampler.n=16"
)
ORDER=(temperature_t1 esamp_b025 min_p01 temperature_t07 esamp_b01 esamp_b1 noise_b025 naive_b05 shared_b025 fire)
run_campaign "$@"
