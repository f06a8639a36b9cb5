"""Teacher-forced replay of committed samples: how fast can a Distiller learn on a model's real hidden states?

No generation. Each problem's n committed completions are fed through the model (prompt + completion, one
forward), the taps are read at every decode position, and a Distiller bank is trained online exactly as the
ESamp sampler trains it: one slot per prompt, one step per decode step over the prompt's rows that are still
active at that step (a row of m tokens trains at steps 1 .. m-1; step 0 is the prefill, never trained),
prediction before the step's own update. Every setting is a `sampler.distiller.*` override (the same keys
`run.py` takes), so a setting chosen here runs as is.

Caveat: completions are stored as text, so they are re-tokenised; a token boundary can differ from the one
sampled (BPE round trips are stable for almost all text), which changes nothing about the question asked.

The reference predictor `running_mean` has no parameters: at step t it predicts the mean of the prompt's
target states at steps 1 .. t-1 (zero at step 1), causal like the Distiller.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from esamp.models import LoadedModel
from esamp.seeding import prompt_generator
from esamp.samplers.esamp.trainer import make_trainer

RUNNING_MEAN = "running_mean"


@dataclass
class ProblemTaps:
    """One prompt's replayed trajectories: src/tgt [n, T, H] float32 at decode steps 1..T (index t-1 = step t),
    `steps` [n] the number of trained steps of each row, `prompt_mean` [H] mean final normed state of the
    prompt's own positions (only the `output_bias=prompt` extension reads it)."""

    problem_id: str
    src: torch.Tensor
    tgt: torch.Tensor
    steps: torch.Tensor
    prompt_mean: torch.Tensor


def sequence_taps(lm: LoadedModel, ids: torch.Tensor, attention: torch.Tensor, kinds=("paper",)) -> dict:
    """{kind: (source, target)} at every position of right-padded `ids` [R, L], from ONE forward: the same
    taps as the decoding loop's `HiddenTaps` (paper: decoder layer 0's output -> final normed state; tllm:
    layers[0] / layers[-1] input_layernorm outputs), float32 [R, L, H]; key "final": the final normed state."""
    store: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            store[name] = (output[0] if isinstance(output, tuple) else output).float()
        return hook

    modules = {}
    if "paper" in kinds:
        modules["layer0"] = lm.layers[0]
    if "tllm" in kinds:
        modules["ln_first"], modules["ln_last"] = lm.layers[0].input_layernorm, lm.layers[-1].input_layernorm
    handles = [m.register_forward_hook(keep(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            final = lm.decoder(input_ids=ids, attention_mask=attention).last_hidden_state.float()
    finally:
        for h in handles:
            h.remove()
    out = {"final": final}
    if "paper" in kinds:
        out["paper"] = (store["layer0"], final)
    if "tllm" in kinds:
        out["tllm"] = (store["ln_first"], store["ln_last"])
    return out


def problem_taps(lm: LoadedModel, problem_id: str, prompt: str, completions: list[list[int]], max_steps: int,
                 kinds=("paper",)) -> dict[str, ProblemTaps]:
    """Replay one prompt's n completions (token ids, EOS included where the sample ended on it): {kind: taps}."""
    p = lm.encode(prompt)
    rows = [p + c[: max_steps] for c in completions]
    width = max(len(r) for r in rows)
    pad = lm.eos_token_ids[0]
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=lm.device)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=lm.device)
    taps = sequence_taps(lm, ids, attention, kinds)
    L = len(p)
    # step t (t >= 1) feeds completion token t-1, at position L + t - 1; a row of m tokens trains at 1..m-1
    steps = torch.tensor([max(0, min(len(c), max_steps + 1) - 1) for c in completions])
    T = max(1, int(steps.max()))
    prompt_mean = taps["final"][0, :L].mean(0).cpu()
    out = {}
    for kind in kinds:
        src, tgt = (x[:, L:L + T] for x in taps[kind])
        if src.shape[1] < T:  # every row shorter than T is masked there anyway
            zeros = src.new_zeros(src.shape[0], T - src.shape[1], src.shape[2])
            src, tgt = torch.cat([src, zeros], 1), torch.cat([tgt, zeros], 1)
        out[kind] = ProblemTaps(problem_id, src.cpu(), tgt.cpu(), steps, prompt_mean)
    return out


def _stack(problems: list[ProblemTaps], t: int):
    """[S, n, H] source / target at step t (1-based) and the [S, n] mask of rows still active there."""
    src = torch.stack([pt.src[:, min(t - 1, pt.src.shape[1] - 1)] for pt in problems])
    tgt = torch.stack([pt.tgt[:, min(t - 1, pt.tgt.shape[1] - 1)] for pt in problems])
    mask = torch.stack([pt.steps >= t for pt in problems])
    return src, tgt, mask


def replay(problems: list[ProblemTaps], setting: dict, variant: str = "paper", max_steps: int = 256,
           seed: int = 0) -> dict:
    """Train one bank (a slot per problem) through the replayed steps with `setting` (sampler.distiller.*
    overrides; {"predictor": "running_mean"} for the reference); returns per-step curves (index t-1 = step t)
    of the mean relative error, error along h, gradient norm, eps-damped share, and the active rows."""
    H, S = problems[0].src.shape[-1], len(problems)
    horizon = min(max_steps, max(int(pt.steps.max()) for pt in problems))
    rows = [0] * horizon
    if setting.get("predictor") == RUNNING_MEAN:
        rel_sum, along_sum = [0.0] * horizon, [0.0] * horizon
        total, count = torch.zeros(S, 1, H), torch.zeros(S, 1, 1)
        for t in range(1, horizon + 1):
            src, tgt, mask = _stack(problems, t)
            pred = total / count.clamp_min(1)
            err = tgt - pred
            rel = err.norm(dim=-1) / tgt.norm(dim=-1).clamp_min(1e-12)
            along = (err * tgt).sum(-1) / tgt.square().sum(-1).clamp_min(1e-24)
            rows[t - 1] = int(mask.sum())
            rel_sum[t - 1], along_sum[t - 1] = float(rel[mask].sum()), float(along[mask].sum())
            total += (tgt * mask[..., None]).sum(1, keepdim=True)
            count += mask.sum(1).view(S, 1, 1)
        mean = lambda xs: [x / c if c else float("nan") for x, c in zip(xs, rows)]  # noqa: E731
        nan = [float("nan")] * horizon
        return _curves(rows, mean(rel_sum), mean(along_sum), nan, nan)
    opts = {k: v for k, v in setting.items() if k != "predictor"}
    trainer = make_trainer(variant, hidden=H, num_slots=S, max_new_tokens=horizon, **opts)
    # each slot's fresh Distiller drawn exactly as the sampler draws it at admission: from (seed, problem id)
    trainer.reset(generators=[prompt_generator(seed, pt.problem_id, "cpu") for pt in problems], max_new_tokens=horizon)
    if opts.get("output_bias") == "prompt":
        for s, pt in enumerate(problems):
            trainer.bank.set_output_bias(s, pt.prompt_mean)
    for t in range(1, horizon + 1):
        src, tgt, mask = _stack(problems, t)
        trainer.step(src, tgt, mask, slot_steps=torch.full((S,), t - 1, dtype=torch.long))
        rows[t - 1] = int(mask.sum())
    st = trainer.stats()  # its curves are already means over each step's active rows
    return _curves(rows, st["rel_error_norm_curve"], st["err_along_h_curve"], st["grad_norm_curve"],
                   st["eps_damped_curve"])


def _curves(rows, rel, along, grad, eps) -> dict:
    return {"rows": rows, "rel_error": list(rel), "err_along_h": list(along), "grad_norm": list(grad),
            "eps_damped": list(eps)}


def token_weighted_mean(curve: list[float], rows: list[int], first: int = 1, last: int = 128) -> float:
    """Mean of a per-step curve over steps first..last, weighted by the active rows at each step."""
    pairs = [(v, c) for t, (v, c) in enumerate(zip(curve, rows), start=1) if first <= t <= last and c]
    weight = sum(c for _, c in pairs)
    return sum(v * c for v, c in pairs) / weight if weight else float("nan")
