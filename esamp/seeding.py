"""Where randomness comes from. Every random draw of a run is keyed by (seed, problem id, ...), never by a
global RNG or by batch position, so a sample depends only on its own problem, index and the sampler: never on
which prompts shared its batch or when it entered it."""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def problem_key(problem_id: str) -> int:
    """A stable 63-bit integer for a problem id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(str(problem_id).encode(), digest_size=8).digest(), "little") >> 1


def row_uniforms(seed: int, problem_ids, n: int, steps: int) -> torch.Tensor:
    """(P*n, steps) float64 uniforms; row (p, s) uses Philox seeded by SeedSequence((seed, problem id, s))."""
    out = np.empty((len(problem_ids) * n, steps), dtype=np.float64)
    for p, pid in enumerate(problem_ids):
        key = problem_key(pid)
        for s in range(n):
            gen = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, key, s])))
            out[p * n + s] = gen.random(steps)
    return torch.from_numpy(out)


def prompt_generator(seed: int, problem_id: str | None, device, slot: int = 0) -> torch.Generator:
    """The generator that draws a prompt's fresh per-prompt state (ESamp's Distiller init); `slot` keys
    state that belongs to no problem (a shared Distiller)."""
    key = problem_key(problem_id) if problem_id is not None else slot
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + key) % (2**63 - 1))
