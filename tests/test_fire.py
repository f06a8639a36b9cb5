"""FIRE: step 0 from the flaming-hot distribution, then exactly the base sampler; config errors name the key."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from esamp.generation import generate
from esamp.pipeline import build
from esamp.samplers.base import Choice
from esamp.samplers.fire import FireSampler
from esamp.samplers.truncation import TruncationSampler, truncate
from tests.conftest import ROOT, make_sampler, tiny_cfg

PROMPTS = ["Once upon a time", "The answer is", "In a hole in the ground there lived"]
IDS = ["p0", "p1", "p2"]


@pytest.fixture(scope="module")
def sharp_lm():
    """A tiny random model with a sharp first-token distribution (top token ~0.73 at T = 1), so a high
    first temperature visibly flattens it."""
    from esamp.models import load_model

    return load_model(tiny_cfg(init_scale=64.0, seed=1))


class RecordFirst(FireSampler):
    """FIRE itself, also keeping each row's step-0 uniform (the loop's own per-row random numbers)."""

    def choose(self, view):
        if view.prefill:
            self.first_uniform = view.uniform.clone()
        return super().choose(view)


def test_first_token_follows_the_hot_distribution(sharp_lm):
    n, t_first, k_first = 2000, 3.0, 8
    prompt = sharp_lm.render([{"role": "user", "content": "Pick a number."}])
    fire = make_sampler("fire", as_class=RecordFirst, n=n, first_temperature=t_first, first_top_k=k_first,
                        temperature=1.0)
    out = generate(sharp_lm, fire, [prompt], ["q"], max_new_tokens=1, seed=5, ignore_eos=True)
    first = torch.tensor([r.token_ids[0] for r in out.prompts[0]])

    # The hand-computed hot distribution, from a plain forward of the model (not through the sampler).
    with torch.no_grad():
        logits = sharp_lm.model(torch.tensor([sharp_lm.encode(prompt)])).logits[0, -1].float()
    logits[sharp_lm.eos_token_ids] = float("-inf")  # FIRE never starts an answer with EOS
    top = torch.topk(logits, k_first).indices
    hot = torch.zeros_like(logits)
    hot[top] = torch.softmax(logits[top] / t_first, -1)
    base = torch.softmax(logits, -1)  # the regular T = 1 distribution, for contrast

    # 1) Every row's token is where its own uniform falls in the hot CDF (inverse-CDF sampling).
    cdf = hot.double().cumsum(0)
    expected = torch.searchsorted(cdf, fire.first_uniform * cdf[-1], right=True).clamp(max=len(cdf) - 1)
    assert torch.equal(first, expected)
    # 2) Frequencies: within 4.5 standard errors of the hot probabilities, and clearly not the T = 1 ones.
    freq = torch.bincount(first, minlength=len(logits)).double() / n
    assert set(first.tolist()) <= set(top.tolist())  # first_top_k: nothing outside the top 8
    se = (hot * (1 - hot) / n).sqrt().double()
    assert ((freq - hot.double()).abs()[top] <= 4.5 * se[top]).all(), (freq[top], hot[top])
    assert hot[top[0]] < 0.5 < base[top[0]]  # the premise: T_first flattens this sharp distribution
    assert (freq[top[0]] - base[top[0]]).abs() > 10 * se[top[0]]


class ForcedFirst(TruncationSampler):
    """The base sampler, except that step 0 takes given first tokens (per batch row, set in `first`)."""

    first: torch.Tensor

    def choose(self, view):
        if view.prefill:
            return Choice(self.first[view.rows])
        return super().choose(view)


@pytest.mark.parametrize("base", [dict(temperature=1.0), dict(temperature=0.7, top_p=0.9, min_p=0.02),
                                  dict(temperature=0.0)])
def test_later_steps_are_the_base_sampler(sharp_lm, base):
    fire = make_sampler("fire", n=4, first_temperature=30.0, first_top_k=16, **base)
    out = generate(sharp_lm, fire, PROMPTS, IDS, max_new_tokens=16, seed=3, ignore_eos=True)
    fire_tokens = [r.token_ids for rows in out.prompts for r in rows]
    first = torch.tensor([t[0] for t in fire_tokens])
    # Same seed, same first token per row -> the rest must be the base sampler's tokens exactly.
    forced_sampler = make_sampler("temperature", as_class=ForcedFirst, n=4, **base)
    forced_sampler.first = first
    forced = generate(sharp_lm, forced_sampler, PROMPTS, IDS, max_new_tokens=16, seed=3, ignore_eos=True)
    assert [r.token_ids for rows in forced.prompts for r in rows] == fire_tokens
    # ... and FIRE did change the first tokens (the base sampler alone picks others).
    plain = generate(sharp_lm, make_sampler("temperature", n=4, **base), PROMPTS, IDS, max_new_tokens=1, seed=3,
                     ignore_eos=True)
    assert [r.token_ids[0] for rows in plain.prompts for r in rows] != first.tolist()


def test_first_temperature_equal_to_base_is_the_base_sampler(sharp_lm):
    a = generate(sharp_lm, make_sampler("fire", n=3, first_temperature=0.8, first_top_k=None, temperature=0.8),
                 PROMPTS, IDS, max_new_tokens=12, seed=1, ignore_eos=True)
    b = generate(sharp_lm, make_sampler("temperature", n=3, temperature=0.8), PROMPTS, IDS, max_new_tokens=12, seed=1,
                 ignore_eos=True)
    assert [[r.token_ids for r in rows] for rows in a.prompts] == [[r.token_ids for r in rows] for rows in b.prompts]


def test_first_logits_formula():
    logits = torch.tensor([[4.0, 2.0, 1.0, -3.0]])
    got = make_sampler("fire", first_temperature=2.0, first_top_k=2).first_logits(logits)
    assert torch.equal(got, torch.tensor([[2.0, 1.0, float("-inf"), float("-inf")]]))
    assert torch.equal(got, truncate(logits / 2.0, top_k=2))


@pytest.mark.parametrize("kw,key", [
    (dict(first_temperature=0), "first_temperature"),
    (dict(first_temperature=-1.0), "first_temperature"),
    (dict(first_temperature=float("inf")), "first_temperature"),
    (dict(first_temperature="hot"), "first_temperature"),
    (dict(first_temperature=None), "first_temperature"),
    (dict(first_top_k=0), "first_top_k"),
    (dict(first_top_k=2.5), "first_top_k"),
    (dict(first_top_k=True), "first_top_k"),
    (dict(temperature=-1), "temperature"),   # the base sampler's own checks still apply
    (dict(top_p=1.5), "top_p"),
    (dict(n=0), "n"),
])
def test_bad_options_fail_with_the_key(kw, key):
    with pytest.raises(ValueError) as err:
        make_sampler("fire", **kw)
    msg = str(err.value)
    assert msg.startswith(f"sampler.{key}=") and "allowed" in msg and "\n" not in msg


def test_config_composes_and_is_recorded():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["sampler=fire", "sampler.first_top_k=null", "sampler.top_p=0.95"])
    sampler = build(cfg, "sampler")
    assert isinstance(sampler, FireSampler) and sampler.first_top_k is None and sampler.top_p == 0.95
    d = sampler.describe()
    assert d["name"] == "fire" and d["first_temperature"] == 30.0 and d["n"] == 8
    assert d["order"].startswith("first token: mask EOS -> logits / first_temperature -> first_top_k")


def test_first_token_is_never_eos(sharp_lm):
    """Near-uniform over the whole vocabulary (no top-k): among 3000 first tokens every non-EOS id shows up
    and EOS never does (before EOS was masked, ~1/k of the rows of a top-k draw with EOS in it came out
    empty)."""
    vocab = sharp_lm.model.config.vocab_size
    fire = make_sampler("fire", n=3000, first_temperature=1e4, first_top_k=None)
    out = generate(sharp_lm, fire, [PROMPTS[0]], ["q"], max_new_tokens=1, seed=0)
    first = {r.token_ids[0] for r in out.prompts[0]}
    assert not first & set(sharp_lm.eos_token_ids)
    assert len(first) >= 0.9 * (vocab - len(sharp_lm.eos_token_ids)) and vocab < 3000 / 5
    assert all(r.num_tokens == 1 and r.finish_reason == "length" for r in out.prompts[0])
    assert fire.describe()["first_token_eos"] == "masked"
