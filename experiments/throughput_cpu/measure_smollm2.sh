#!/usr/bin/env bash
# The SmolLM2 rows of experiments/throughput_cpu/README.md: old loop vs new (separate processes, alternating),
# then MFU and ESamp / plain (interleaved, in one process). Needs a checkout of the old loop at OLD (default:
# a worktree of 89be802, the commit before continuous batching) and a quiet machine (no campaign running).
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-/tmp/old_loop}
PY=${PY:-.venv/bin/python}
[ -d "$OLD" ] || git worktree add -f "$OLD" 89be802 --detach
$PY experiments/throughput_cpu/loop_old_vs_new.py "$OLD" . --model smollm2-135m --rounds 2 | tee experiments/throughput_cpu/smollm2_old_vs_new.txt
$PY -m esamp.cli.bench_generate --model smollm2-135m --arms loop,esamp --new-tokens 256 --repeats 5 \
    --json experiments/throughput_cpu/smollm2_after.json | grep -v -i "warn\|loading" | tee experiments/throughput_cpu/smollm2_after.txt
