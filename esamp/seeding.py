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


def row_normals(seed: int, problem_ids, sample_indices, steps, dim: int, stream: str = "noise") -> torch.Tensor:
    """(rows, dim) float32 standard normals; row i is drawn from a generator keyed by (seed, problem_ids[i],
    sample_indices[i], steps[i], stream), so a row's draw at a step never depends on which rows share its
    batch, on their order, on compaction or on a resume (ESamp's `error=noise` control)."""
    out = torch.empty((len(problem_ids), dim), dtype=torch.float32)
    gen = torch.Generator()
    for i, (pid, s, t) in enumerate(zip(problem_ids, sample_indices, steps)):
        key = hashlib.blake2b(f"{seed}|{problem_key(pid)}|{int(s)}|{int(t)}|{stream}".encode(), digest_size=8)
        gen.manual_seed(int.from_bytes(key.digest(), "little") >> 1)
        out[i] = torch.randn(dim, generator=gen)
    return out
