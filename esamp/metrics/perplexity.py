"""Perplexity of continuations given their prompts under a reference causal LM (coherence metric)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from tqdm.auto import tqdm

from esamp.models import LoadedModel


@torch.no_grad()
def continuation_perplexities(lm: LoadedModel, prompts: Sequence[str], continuations: Sequence[str],
                              batch_size: int = 8, max_tokens: int = 1024, progress: bool = True) -> list[float]:
    """exp(mean NLL of the continuation's tokens | prompt) for each pair; nan for an empty continuation.
    Prompt tokens are context only; sequences are right-padded and masked. A progress bar counts the samples
    (a judge over a creative-writing arm runs for minutes on a CPU)."""
    out: list[float] = []
    pad = lm.tokenizer.pad_token_id
    bar = tqdm(total=len(prompts), desc=f"perplexity ({lm.name})", unit="sample", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        pairs = list(zip(prompts[start:start + batch_size], continuations[start:start + batch_size]))
        seqs, spans = [], []
        for p, c in pairs:
            pi, ci = lm.encode(p), lm.encode(c)
            ids = (pi + ci)[-max_tokens:]
            n_cont = min(len(ci), len(ids) - 1)
            seqs.append(ids)
            spans.append(n_cont)
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits
        for i, (s, n_cont) in enumerate(zip(seqs, spans)):
            if n_cont <= 0:
                out.append(float("nan"))
                continue
            # Only the continuation's positions, one row at a time, go to float and log_softmax: a float copy of
            # the whole batch's logits and its log_softmax were each batch x width x vocab (8 x 1024 x 152k
            # floats = 5 GB for a Qwen judge). Same numbers: log_softmax is per position.
            first = len(s) - 1 - n_cont
            targets = torch.tensor(s[first + 1:], device=lm.device)
            logp = logits[i, first: len(s) - 1].float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
            out.append(math.exp(-logp.mean().item()))
        del logits
        bar.update(len(pairs))
    bar.close()
    return out
