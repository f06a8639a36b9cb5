"""Diverse beam search (Vijayakumar et al. 2016), run inside the shared decoding loop.

`num_beams` beams per prompt are split into `num_groups` groups of `num_beams // num_groups` beams. At every
step the groups are expanded in order; group g's token log-probs get `diversity_penalty` subtracted once for
every time that token was chosen (as a running beam's next token) by groups 0..g-1 at this step (Hamming
diversity). Each group is an ordinary beam search over its penalised scores.

Semantics follow Hugging Face (the group beam search of transformers v4, and the beam search of v5, which
`num_groups = 1` reproduces exactly):
  - log-probs are log_softmax(logits / temperature) (temperature 1 by default); beam scores accumulate the
    penalised log-probs (as HF does), so `beam_score` = sum of penalised log-probs / length**length_penalty,
    where length counts the generated tokens including EOS. The unpenalised sum is stored as `beam_logprob`.
  - per group, 2 * group_size candidates (more with several EOS ids) are ranked; an EOS candidate ranked within
    the top group_size becomes a finished hypothesis, and the group's beams continue with the best non-EOS
    candidates. At `max_new_tokens` the top group_size candidates are finalised.
  - each group keeps its best group_size finished hypotheses. early_stopping=True: a group stops once it has
    group_size of them. False: it stops once no running beam can beat its worst hypothesis at the current
    length (HF's heuristic); "never": same, at max length when length_penalty > 0.
  - a prompt stops when all its groups have stopped; its n = num_beams hypotheses (all groups, best score
    first) replace its rows, like n samples.
Step 0 starts every group from one beam (the others score -1e9), so groups do not duplicate each other.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from esamp import checks
from esamp.samplers.base import BatchInfo, Choice, Sampler, StepView

NEG = -1.0e9  # HF's "impossible" score


def check_params(num_beams: Any, num_groups: Any, diversity_penalty: Any, length_penalty: Any,
                 early_stopping: Any, temperature: Any, n: Any) -> None:
    """Raise a one-line ValueError naming the bad key and the allowed values."""
    checks.integer("sampler.num_beams", num_beams)
    checks.integer("sampler.num_groups", num_groups)
    if num_beams % num_groups:
        raise checks.invalid("sampler.num_groups", num_groups,
                             f"integers >= 1 that divide sampler.num_beams={num_beams}")
    checks.number("sampler.diversity_penalty", diversity_penalty, at_least=0)
    checks.number("sampler.length_penalty", length_penalty)
    checks.one_of("sampler.early_stopping", early_stopping, (True, False, "never"))
    checks.number("sampler.temperature", temperature, above=0)
    if n is not None and n != num_beams:
        raise ValueError(f"sampler.n={n!r} is invalid: diverse beam search returns num_beams sequences, allowed "
                         f"values are null or {num_beams} (= sampler.num_beams)")


class DiverseBeamSampler(Sampler):
    continuous = False  # its per-prompt beam state assumes every prompt of a batch starts together
    """Group (diverse) beam search; `num_groups=1` is ordinary beam search."""

    handles_eos = True

    def __init__(self, *, num_beams: int, num_groups: int, diversity_penalty: float, length_penalty: float,
                 early_stopping: bool | str, temperature: float, name: str, n: int | None):
        check_params(num_beams, num_groups, diversity_penalty, length_penalty, early_stopping, temperature, n)
        self.num_beams, self.num_groups = num_beams, num_groups
        self.group_size = num_beams // num_groups
        self.diversity_penalty, self.length_penalty = float(diversity_penalty), float(length_penalty)
        self.early_stopping, self.temperature, self.name = early_stopping, float(temperature), name

    @property
    def n(self) -> int:  # type: ignore[override]
        return self.num_beams

    # ------------------------------------------------------------------------------------------- batch state
    def begin(self, info: BatchInfo) -> None:
        if info.n != self.num_beams:
            raise ValueError(f"diverse_beam: the batch has n={info.n} rows per prompt, expected "
                             f"num_beams={self.num_beams}")
        self.lm, self.max_new_tokens = info.lm, info.max_new_tokens
        P, Gr, G, dev = info.num_prompts, self.num_groups, self.group_size, info.device
        self.eos = torch.tensor(info.lm.eos_token_ids, dtype=torch.long, device=dev)
        # running beams (penalised score, unpenalised log-prob sum, tokens so far)
        self.run_score = torch.full((P, Gr, G), NEG, device=dev)
        self.run_score[:, :, 0] = 0.0
        self.run_raw = torch.zeros((P, Gr, G), device=dev)
        self.run_tok = torch.zeros((P, Gr, G, self.max_new_tokens), dtype=torch.long, device=dev)
        # finished hypotheses, best first per group (HF's `sequences` / `beam_scores` / `is_sent_finished`)
        self.fin_score = torch.full((P, Gr, G), NEG, device=dev)
        self.fin_raw = torch.zeros((P, Gr, G), device=dev)
        self.fin_len = torch.zeros((P, Gr, G), dtype=torch.long, device=dev)
        self.fin_tok = torch.zeros((P, Gr, G, self.max_new_tokens), dtype=torch.long, device=dev)
        self.fin_ok = torch.zeros((P, Gr, G), dtype=torch.bool, device=dev)
        self.improvable = torch.ones((P, Gr), dtype=torch.bool, device=dev)  # HF: early-stop heuristic unsatisfied
        self.done = torch.zeros(P, dtype=torch.bool, device=dev)

    def _group_stopped(self, fin_ok: torch.Tensor, improvable: torch.Tensor) -> torch.Tensor:
        """(.., Gr) bool: the group may add no more hypotheses (HF blocks additions exactly then)."""
        full = fin_ok.all(-1) & (self.early_stopping is True)
        return full | ~improvable

    # ------------------------------------------------------------------------------------------------ step
    def choose(self, view: StepView) -> Choice:
        # lock-step: every row is at one step, counted here on the host (reading view.row_steps would sync)
        step = 0 if view.prefill else self._step
        self._step = step + 1
        n, Gr, G = self.num_beams, self.num_groups, self.group_size
        rows = view.rows  # slot-major: every live prompt holds its n rows in a contiguous block
        L = rows.numel() // n
        prompts = rows.view(L, n)[:, 0] // n  # no host sync here: structure is checked in select_rows
        local = torch.arange(n, device=rows.device)
        was_done = self.done[prompts]

        logits = view.logits()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        logp = torch.log_softmax(logits, dim=-1).view(L, Gr, G, -1)
        V = logp.shape[-1]
        last_step = step == self.max_new_tokens - 1
        length = step + 1  # generated tokens including this one
        K = max(2, 1 + self.eos.numel()) * G

        run_score, run_raw, run_tok = self.run_score[prompts], self.run_raw[prompts], self.run_tok[prompts]
        fin_score, fin_raw, fin_len = self.fin_score[prompts], self.fin_raw[prompts], self.fin_len[prompts]
        fin_tok, fin_ok, improvable = self.fin_tok[prompts], self.fin_ok[prompts], self.improvable[prompts]
        stopped = self._group_stopped(fin_ok, improvable)  # (L, Gr), state after the previous step

        counts = torch.zeros((L, V), device=logp.device)  # tokens chosen by earlier groups at this step
        tokens = torch.empty((L, Gr, G), dtype=torch.long, device=logp.device)
        parents = torch.empty((L, Gr, G), dtype=torch.long, device=logp.device)
        new = {k: [] for k in ("run_score", "run_raw", "run_tok", "fin_score", "fin_raw", "fin_len", "fin_tok",
                               "fin_ok")}
        for g in range(Gr):
            lp = logp[:, g]
            if g > 0 and self.diversity_penalty > 0:
                lp = lp - self.diversity_penalty * counts[:, None, :]
            acc = (lp + run_score[:, g, :, None]).reshape(L, G * V)
            top_val, top_idx = torch.topk(acc, K, dim=-1)
            beam, tok = top_idx // V, top_idx % V
            raw = logp[:, g].reshape(L, G * V).gather(1, top_idx) + run_raw[:, g].gather(1, beam)
            seq = run_tok[:, g].gather(1, beam[..., None].expand(L, K, self.max_new_tokens)).clone()
            seq[:, :, step] = tok
            hits = torch.isin(tok, self.eos) | last_step

            # the group's running beams: best candidates that did not finish
            run_val = top_val + hits.float() * NEG
            keep = torch.topk(run_val, G, dim=-1).indices
            new["run_score"].append(run_val.gather(1, keep))
            new["run_raw"].append(raw.gather(1, keep))
            new["run_tok"].append(seq.gather(1, keep[..., None].expand(L, G, self.max_new_tokens)))
            tokens[:, g] = tok.gather(1, keep)
            parents[:, g] = g * G + beam.gather(1, keep)

            # finished hypotheses: EOS candidates ranked within the top G join the group's best G
            eligible = hits.clone()
            eligible[:, G:] = False
            cand = top_val / (length ** self.length_penalty)
            cand = cand + (fin_ok[:, g].all(-1, keepdim=True) & (self.early_stopping is True)).float() * NEG
            cand = cand + (~improvable[:, g, None]).float() * NEG
            cand = cand + (~eligible).float() * NEG
            m_score = torch.cat([fin_score[:, g], cand], 1)
            best = torch.topk(m_score, G, dim=-1).indices
            new["fin_score"].append(m_score.gather(1, best))
            new["fin_raw"].append(torch.cat([fin_raw[:, g], raw], 1).gather(1, best))
            new["fin_len"].append(torch.cat([fin_len[:, g], torch.full_like(tok, length)], 1).gather(1, best))
            best_tok = best[..., None].expand(L, G, self.max_new_tokens)
            new["fin_tok"].append(torch.cat([fin_tok[:, g], seq], 1).gather(1, best_tok))
            new["fin_ok"].append(torch.cat([fin_ok[:, g], eligible], 1).gather(1, best))

            if g + 1 < Gr and self.diversity_penalty > 0:  # a stopped group no longer steers the others
                live = (~stopped[:, g, None]).float().expand(L, G)
                counts.scatter_add_(1, tokens[:, g], live)

        upd = {k: torch.stack(v, 1) for k, v in new.items()}
        # HF's early-stop heuristic, evaluated after the step (length = tokens generated so far)
        best_len = self.max_new_tokens if (self.early_stopping == "never" and self.length_penalty > 0) else length
        best_possible = upd["run_score"][..., :1] / (best_len ** self.length_penalty)
        worst = torch.where(upd["fin_ok"], upd["fin_score"].min(-1, keepdim=True).values,
                            torch.full_like(upd["fin_score"], NEG))
        upd["improvable"] = improvable & (best_possible > worst).any(-1)
        now_done = self._group_stopped(upd["fin_ok"], upd["improvable"]).all(-1)

        # write back (prompts that were already done keep their state; their rows await compaction)
        for key, val in upd.items():
            state = getattr(self, key)
            keep_old = was_done.view(-1, *([1] * (val.dim() - 1)))
            state[prompts] = torch.where(keep_old, state[prompts], val)
        self.done[prompts] = was_done | now_done

        parents = torch.where(was_done[:, None], local, parents.view(L, n)) + (torch.arange(L, device=rows.device)
                                                                                [:, None] * n)
        finished = (was_done | now_done)[:, None].expand(L, n).reshape(-1)
        return Choice(tokens=tokens.view(-1), parents=parents.view(-1), finished=finished)

    def select_rows(self, keep: torch.Tensor) -> None:
        """State is kept per prompt, so nothing to index; only check that whole prompts left the batch
        (this runs at the loop's host sync point, so the check costs no extra sync)."""
        n = self.num_beams
        blocks = keep.view(-1, n) if keep.numel() % n == 0 else None
        if blocks is None or not bool(((blocks[:, :1] % n == 0) & (blocks - blocks[:, :1] == torch.arange(
                n, device=keep.device))).all()):
            raise RuntimeError("diverse_beam: the loop retired some beams of a running prompt; beam search needs "
                               "all n rows of a prompt until the sampler finishes it (stop strings are not "
                               "supported with beam search)")

    # ------------------------------------------------------------------------------------------ hypotheses
    def finalize(self, prompt_index: int, rows: list) -> list:
        """Replace the prompt's rows by its num_beams hypotheses, best score first (all groups merged)."""
        p, Gr, G = prompt_index, self.num_groups, self.group_size
        score = self.fin_score[p].reshape(-1)  # every slot is filled: max length finalises
        raw, lengths = self.fin_raw[p].reshape(-1), self.fin_len[p].reshape(-1)
        toks = self.fin_tok[p].reshape(Gr * G, self.max_new_tokens)
        order = torch.sort(score, descending=True, stable=True).indices.tolist()
        eos = set(self.eos.tolist())
        out = []
        for s, h in enumerate(order):
            ids = toks[h, : int(lengths[h])].tolist()
            reason = "eos" if ids and ids[-1] in eos else "length"
            text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
            meta = dict(rows[s].meta)
            meta.update(beam_score=float(score[h]), beam_logprob=float(raw[h]), beam_group=h // G)
            out.append(dataclasses.replace(rows[s], sample_index=s, token_ids=ids, text=text,
                                           finish_reason=reason, meta=meta))
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "num_beams": self.num_beams, "num_groups": self.num_groups,
                "diversity_penalty": self.diversity_penalty, "length_penalty": self.length_penalty,
                "early_stopping": self.early_stopping, "temperature": self.temperature,
                "semantics": "Hugging Face group beam search: Hamming penalty on tokens chosen by earlier groups "
                             "at the same step; score = sum(penalised logprobs) / len**length_penalty"}
