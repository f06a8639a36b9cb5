"""The Distiller-learning replay: its taps are the loop's taps, and its training is the sampler's training."""
import pytest
import torch

from esamp.generation import generate
from esamp.replay import RUNNING_MEAN, ProblemTaps, problem_taps, replay, token_weighted_mean
from esamp.samplers.esamp import ESampSampler
from tests.conftest import make_sampler

PROMPT, PID = "replay this prompt, please", "r0"


class RecordTaps(ESampSampler):
    """ESamp, recording each decode step's taps; a row ends when its own token id is divisible by 7 (rows of
    different lengths, EOS being a token the replay feeds never)."""

    def choose(self, view):
        if not view.prefill:
            self.seen.append((view.row_steps.clone(), view.active.clone(), view.taps[0].float().clone(),
                              view.taps[1].float().clone()))
        c = super().choose(view)
        c.tokens = torch.where(c.tokens % 7 == 0, view.lm.eos_token_ids[0], c.tokens)
        return c


@pytest.mark.parametrize("variant", ["paper", "tllm"])
def test_replayed_taps_and_training_equal_the_samplers(peaked_lm, variant):
    s = make_sampler("esamp", as_class=RecordTaps, n=4, variant=variant)
    s.seen = []
    out = generate(peaked_lm, s, [PROMPT], [PID], max_new_tokens=16, seed=4)
    completions = [r.token_ids for r in out.prompts[0]]
    assert len({len(c) for c in completions}) > 1  # rows end at different steps (EOS on)
    pt = problem_taps(peaked_lm, PID, PROMPT, completions, 16, kinds=(variant,))[variant]
    for steps, active, src, tgt in s.seen:
        for r in active.nonzero().squeeze(1).tolist():
            t = int(steps[r])
            torch.testing.assert_close(pt.src[r, t - 1], src[r], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(pt.tgt[r, t - 1], tgt[r], atol=1e-4, rtol=1e-4)
    assert pt.steps.tolist() == [len(c) - 1 for c in completions]
    curves = replay([pt], {}, variant=variant, max_steps=16, seed=4)
    want = out.telemetry["rel_error_norm_curve"]
    assert curves["rel_error"] == pytest.approx(want, rel=1e-4)
    assert curves["rows"] == [int((pt.steps >= t).sum()) for t in range(1, len(want) + 1)]


def test_running_mean_predicts_the_mean_of_earlier_steps():
    tgt = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]]])  # one row, steps 1..3
    pt = ProblemTaps("p", torch.zeros_like(tgt), tgt, torch.tensor([3]), torch.zeros(2))
    c = replay([pt], {"predictor": RUNNING_MEAN}, max_steps=3)
    # step 1: predicts 0 -> rel 1; step 2: predicts 1 -> |3-1|/3; step 3: predicts 2 -> |5-2|/5
    assert c["rel_error"] == pytest.approx([1.0, 2 / 3, 3 / 5])
    assert token_weighted_mean(c["rel_error"], c["rows"], 1, 2) == pytest.approx((1 + 2 / 3) / 2)
