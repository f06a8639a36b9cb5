"""Each truncation rule against a hand-computed case, their composition order, and the sampling rule."""
import pytest
import torch

from esamp.generation import generate
from esamp.samplers.base import Choice
from esamp.samplers.truncation import NoProbabilityMass, TruncationSampler, check_params, sample, truncate
from tests.conftest import make_sampler

NEG = float("-inf")


def logits_from_probs(p):
    return torch.log(torch.tensor([p], dtype=torch.float32))


def kept(t):
    return torch.isfinite(t[0]).tolist()


def test_top_k():
    x = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    assert kept(truncate(x, top_k=2)) == [False, True, True, False]
    assert kept(truncate(x, top_k=4)) == [True] * 4


def test_top_p_hand_computed():
    # probs 0.5, 0.3, 0.15, 0.05: top_p 0.8 keeps the smallest set reaching 0.8 -> {0.5, 0.3}
    x = logits_from_probs([0.15, 0.5, 0.05, 0.3])
    assert kept(truncate(x, top_p=0.8)) == [False, True, False, True]
    # 0.81 needs the third token too
    assert kept(truncate(x, top_p=0.81)) == [True, True, False, True]
    # tiny top_p still keeps the most likely token
    assert kept(truncate(x, top_p=1e-6)) == [False, True, False, False]


def test_min_p_hand_computed():
    # max prob 0.5; min_p 0.25 -> threshold 0.125: keep 0.5, 0.3, 0.15; drop 0.05
    x = logits_from_probs([0.15, 0.5, 0.05, 0.3])
    assert kept(truncate(x, min_p=0.25)) == [True, True, False, True]
    assert kept(truncate(x, min_p=0.7)) == [False, True, False, False]


def test_composition_order_top_k_then_top_p_renormalised():
    # probs .4 .3 .2 .1; top_k 3 renormalises to .444 .333 .222; top_p .75 then keeps 2 tokens
    # (.444 + .333 = .777 >= .75). Applied to the unrenormalised distribution it would need 3 tokens
    # (.4 + .3 = .7 < .75).
    x = logits_from_probs([0.4, 0.3, 0.2, 0.1])
    assert kept(truncate(x, top_k=3, top_p=0.75)) == [True, True, False, False]
    assert kept(truncate(x, top_p=0.75)) == [True, True, True, False]


def test_temperature_changes_what_top_p_keeps():
    s = make_sampler("temperature", n=1, temperature=0.5, top_p=0.8)
    x = logits_from_probs([0.6, 0.25, 0.15])
    # At T=0.5 probs become ~ .81 .14 .05 -> top_p 0.8 keeps only the first.
    assert kept(s.filtered(x)) == [True, False, False]
    s1 = make_sampler("temperature", n=1, temperature=1.0, top_p=0.8)
    assert kept(s1.filtered(x)) == [True, True, False]


def test_inverse_cdf_sampling():
    x = logits_from_probs([0.1, 0.2, 0.7])
    pick = lambda u: int(sample(x, torch.tensor([u], dtype=torch.float64))[0])  # noqa: E731
    assert [pick(u) for u in (0.0, 0.05, 0.11, 0.29, 0.31, 0.999)] == [0, 0, 1, 1, 2, 2]
    # removed tokens are never sampled, whatever the uniform
    t = truncate(x, top_k=1)
    assert {int(sample(t, torch.tensor([u], dtype=torch.float64))[0]) for u in (0.0, 0.5, 0.9999)} == {2}


def test_sampling_frequencies_match_softmax():
    x = torch.tensor([[0.0, 1.0, 2.0]])
    u = torch.rand(20000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    idx = sample(x.expand(20000, 3), u)
    freq = torch.bincount(idx, minlength=3).float() / 20000
    assert torch.allclose(freq, x.softmax(-1)[0], atol=0.015)


@pytest.mark.parametrize("kw,key", [
    (dict(temperature=-0.1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(min_p=1.0), "min_p"), (dict(min_p=-0.1), "min_p"), (dict(top_k=0), "top_k"), (dict(n=0), "n"),
])
def test_invalid_values_name_the_key(kw, key):
    args = dict(temperature=1.0, top_k=None, top_p=None, min_p=None, n=4)
    args.update(kw)
    with pytest.raises(ValueError, match=f"sampler.{key}="):
        check_params(**args)


def _reference_sample(logits, u):
    """The former one-level kernel (full float64 softmax CDF), as the reference for the two-level one."""
    cdf = logits.double().softmax(-1).cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return idx.clamp(max=logits.shape[-1] - 1)


def test_two_level_sampling_agrees_with_a_full_cdf_on_a_real_vocabulary_size():
    """Block boundaries of the two-level kernel are invisible: on a 151,936-token vocabulary with peaked and
    flat rows, every draw equals the full-CDF reference except where u * total lies within rounding of a
    token boundary (none expected in 4,096 draws)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 151936, generator=g) * torch.linspace(0.5, 12, 64).unsqueeze(-1)
    u = torch.rand(64, generator=g, dtype=torch.float64)
    for shift in range(64):
        uu = (u + shift / 64) % 1.0
        assert torch.equal(sample(logits, uu), _reference_sample(logits, uu))


def test_a_zero_probability_token_is_never_drawn_even_at_u_close_to_one():
    """u >= 1 - 2**-25 used to round to 1.0 in float32 and pick the last vocabulary id, probability 0 or not."""
    logits = torch.full((3, 5000), float("-inf"))
    logits[:, 10], logits[:, 4000] = 0.0, 1.0   # the last ids (4001..4999) are impossible
    u = torch.tensor([1 - 2**-25, 1 - 2**-53, 0.999999999], dtype=torch.float64)
    assert sample(logits, u).tolist() == [4000, 4000, 4000]
    # and the first possible token is reachable at u = 0, the zero-probability ids before it are not
    assert int(sample(logits[:1], torch.tensor([0.0], dtype=torch.float64))[0]) == 10


def test_filtered_tokens_never_drawn_over_many_uniforms():
    logits = torch.randn(1, 3000, generator=torch.Generator().manual_seed(1)) * 3
    kept = truncate(logits, top_p=0.5)
    u = torch.linspace(0, 1 - 1e-12, 5001, dtype=torch.float64)
    picks = sample(kept.expand(5001, -1), u)
    assert torch.isfinite(kept[0, picks]).all()


def test_sample_refuses_rows_without_probability_mass():
    """NaN, +inf or all -inf logits have no distribution to sample: before, a token came back anyway."""
    good = torch.tensor([0.0, 1.0, 2.0])
    for bad in ([float("nan"), 0.0, 1.0], [float("-inf")] * 3, [0.0, float("inf"), 1.0]):
        with pytest.raises(NoProbabilityMass) as err:
            sample(torch.stack([good, torch.tensor(bad)]), torch.tensor([0.3, 0.3], dtype=torch.float64))
        assert err.value.rows == [1]
    assert sample(good[None], torch.tensor([0.99], dtype=torch.float64)).item() == 2


def test_the_loop_names_the_step_problem_and_sample_of_a_nan_row(tiny_lm):
    class DivergesAtStep3(TruncationSampler):
        def choose(self, view):
            if not view.prefill and int(view.row_steps[1]) == 3:
                logits = view.logits()
                logits[1] = float("nan")
                return Choice(sample(logits, view.uniform))
            return super().choose(view)

    with pytest.raises(RuntimeError, match=r"problem 'q7' sample 1 step 3; settings: \{'name': 'temperature'"):
        generate(tiny_lm, make_sampler("temperature", as_class=DivergesAtStep3, n=2), ["a prompt"], ["q7"],
                 max_new_tokens=8, ignore_eos=True)
