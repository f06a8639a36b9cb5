"""The judge's continuation perplexity on a real (tiny, random) model forward: batched and right-padded it
must equal the plain one-sequence computation, count only the continuation's tokens, and say nan for none."""
from __future__ import annotations

import math

import pytest
import torch

from esamp.metrics.perplexity import continuation_perplexities


def reference_perplexity(lm, ids: list[int], n_prompt: int) -> float:
    """exp(mean NLL) of the tokens after the first n_prompt, one unpadded sequence, written out by hand."""
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].double()
    nll = [-(logits[t - 1].log_softmax(-1)[ids[t]]).item() for t in range(n_prompt, len(ids))]
    return math.exp(sum(nll) / len(nll))


def test_batched_padded_perplexity_equals_one_sequence_at_a_time(tiny_lm):
    prompts = ["Once upon a time", "The", "A much longer prompt with many more words in it than the others", "x"]
    conts = [" there was a cat.", " end of the story, and more words follow here", " short", " y z"]
    got = continuation_perplexities(tiny_lm, prompts, conts, batch_size=3, progress=False)  # 2 batches, padded
    want = [reference_perplexity(tiny_lm, tiny_lm.encode(p) + tiny_lm.encode(c), len(tiny_lm.encode(p)))
            for p, c in zip(prompts, conts)]
    assert got == pytest.approx(want, rel=1e-4)
    # the prompt is context only: a different prompt changes the number, a continuation's own tokens are scored
    assert continuation_perplexities(tiny_lm, ["Other words"], [conts[0]], progress=False)[0] != pytest.approx(got[0])
    assert 1.0 < min(got) and max(got) < 2 * tiny_lm.model.config.vocab_size


def test_empty_continuation_is_nan_and_max_tokens_keeps_the_tail(tiny_lm):
    ppl = continuation_perplexities(tiny_lm, ["Hello", "Hello"], ["", " world and more"], progress=False)
    assert math.isnan(ppl[0]) and math.isfinite(ppl[1])
    # a window shorter than prompt + continuation keeps the last max_tokens tokens: scoring one continuation
    # cut to its tail equals scoring that tail with the preceding tokens as prompt
    cont = " one two three four five six seven eight"
    ids = tiny_lm.encode("Hello") + tiny_lm.encode(cont)
    cut = continuation_perplexities(tiny_lm, ["Hello"], [cont], max_tokens=6, progress=False)[0]
    assert len(tiny_lm.encode(cont)) > 5
    assert cut == pytest.approx(reference_perplexity(tiny_lm, ids[-6:], 1), rel=1e-4)
