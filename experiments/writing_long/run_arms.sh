#!/usr/bin/env bash
# Long writing (issue 22, section 2: the registered switch from math500_long, whose answers are too short): the
# paper's own creative-writing protocol, 512-token continuations x 16 samples, on the 64 book passages of
# writing_frontier (task.num_prompts=64, prompt_seed 42), seed 0, generator SmolLM2-135M-Instruct. No judge during
# the run (task.ppl_model=null): the quality axes are computed afterwards (README). 8 prompts x 16 = 128 rows.
# Arms run one after another into results/writing_long/<arm>; a killed arm resumes.
#   nohup bash experiments/writing_long/run_arms.sh [ARM ...] > results/writing_long/campaign.log 2>&1 &
source "$(dirname "$0")/../campaign.sh"
CAMPAIGN=writing_long
COMMON=(model=smollm2-135m task=creative_writing task.num_prompts=64 task.max_new_tokens=512 task.ppl_model=null
        task.embedder_max_seq_length=512 seed=0 generation.batch_prompts=8)
declare -A ARMS=(
  [temperature_t1]="sampler=temperature sampler.n=16"
  [temperature_t08]="sampler=temperature sampler.n=16 sampler.temperature=0.8"
  [esamp_b025]="sampler=esamp sampler.n=16"
  [esamp_frozen_b025]="sampler=esamp sampler.n=16 sampler.distiller.lr=0"
  # SmolLM2's best replayed setting (experiments/distiller_learning: it did NOT beat the running mean over steps
  # 1-128, so it is not a "fast" setting by that rule; whether it learns over 511 steps is measured, see README).
  # The same overrides as Qwen's fast arm; an EXTENSION (prompt-initialised output bias).
  [esamp_best_b025]="sampler=esamp sampler.n=16 sampler.distiller.input_norm=rms sampler.distiller.output_bias=prompt sampler.distiller.eps=1e-8 sampler.distiller.grad_clip=0"
)
ORDER=(temperature_t1 esamp_b025 esamp_best_b025 esamp_frozen_b025 temperature_t08)
run_campaign "$@"
