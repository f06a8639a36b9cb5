"""ESamp invariants (docs/esamp-method.md): beta = 0 is the base sampler, candidates are never added or
removed, fusion formulas, latent mixing == logit fusion, serial == async, and each ablation matters."""
import pytest
import torch

from esamp.generation import generate
from esamp.samplers.base import StepView
from esamp.samplers.esamp import ESampSampler
from esamp.samplers.truncation import TruncationSampler, truncate

PROMPTS = ["Once upon a time", "The answer is", "In a hole in the ground there lived"]
IDS = ["p0", "p1", "p2"]
FILTERS = [dict(), dict(top_k=20), dict(top_p=0.9), dict(min_p=0.05), dict(top_k=40, top_p=0.95, min_p=0.02)]


def toks(out):
    return [[r.token_ids for r in rows] for rows in out.prompts]


def gen(lm, sampler, n_tokens=24, seed=3):
    return generate(lm, sampler, PROMPTS, IDS, max_new_tokens=n_tokens, seed=seed, ignore_eos=True)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_beta_zero_equals_base_sampler(peaked_lm, filters, temperature):
    base = gen(peaked_lm, TruncationSampler(n=3, temperature=temperature, **filters))
    es = ESampSampler(n=3, temperature=temperature, beta=0.0, **filters)
    out = gen(peaked_lm, es)
    assert toks(out) == toks(base)
    assert out.telemetry["train_steps"] > 0  # the Distiller still trained: beta only gates the intervention


def test_beta_positive_changes_tokens(peaked_lm):
    base = gen(peaked_lm, TruncationSampler(n=3))
    assert toks(gen(peaked_lm, ESampSampler(n=3, beta=0.5))) != toks(base)


def test_top_k_one_equals_greedy(peaked_lm):
    greedy = gen(peaked_lm, TruncationSampler(n=2, temperature=0.0))
    assert toks(gen(peaked_lm, ESampSampler(n=2, beta=1.0, top_k=1))) == toks(greedy)


class Recorder(ESampSampler):
    """Records, per step, the base filter's candidate set and the token chosen."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.log = []

    def choose(self, view):
        c = super().choose(view)
        keep = torch.isfinite(truncate(view.logits() / self.temperature, self.top_k, self.top_p, self.min_p))
        self.log.append((keep, c.tokens))
        self.prefill_log = getattr(self, "prefill_log", []) + [view.prefill]
        return c


@pytest.mark.parametrize("filters", FILTERS[1:])
def test_never_picks_a_token_the_filter_removed(peaked_lm, filters):
    rec = Recorder(n=4, beta=2.0, **filters)  # a large beta pushes hard towards low-probability tokens
    gen(peaked_lm, rec, n_tokens=30)
    for keep, tokens in rec.log:
        assert keep.gather(1, tokens[:, None]).all()


def test_intervention_keeps_the_candidate_set(peaked_lm):
    """The fused distribution's support equals the filter's kept set exactly (no add, no remove)."""
    es = ESampSampler(n=2, beta=0.5, top_p=0.9)
    captured = {}
    import esamp.samplers.esamp as mod

    real_sample = mod.sample

    def spy(logits, u):
        captured.setdefault("support", []).append(torch.isfinite(logits))
        return real_sample(logits, u)

    mod.sample = spy
    try:
        rec = Recorder(n=2, beta=0.5, top_p=0.9)
        gen(peaked_lm, rec, n_tokens=10)
    finally:
        mod.sample = real_sample
    # a prompt's first token (its prefill) is the base sampler (TruncationSampler.sample is imported
    # separately): align on the decode steps
    supports = captured["support"]
    decode = [entry for entry, prefill in zip(rec.log, rec.prefill_log) if not prefill]
    assert len(supports) == len(decode) == 9
    for (keep, _), support in zip(decode, supports):
        assert torch.equal(keep, support)


def test_fusion_on_hand_computed_logits(tiny_lm):
    """(1 + beta) * ref - beta * dist on hand-made numbers, via a stub LM head."""
    es = ESampSampler(n=1, beta=0.5, top_k=2, temperature=1.0, latent_mixing=False)
    ref = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    dist = torch.tensor([[3.0, -1.0, 0.0, 5.0]])
    # expected on kept {0, 1}: 1.5 * 2 - .5 * 3 = 1.5 ; 1.5 * 1 + .5 = 2.0 -> token 1 has prob sigmoid(.5)
    expected = torch.tensor([1.5, 2.0])
    p1 = torch.sigmoid(expected[1] - expected[0])

    class Head(torch.nn.Module):
        bias = None

        def forward(self, h):  # hidden [B, 2]: row 0 encodes "ref", row 1 "dist"
            return torch.where(h[:, :1] > 0, ref, dist).expand(h.shape[0], -1)

    class FakeLM:
        lm_head = Head()

    class FakeTrainer:
        num_slots = 1

        def step(self, x, y, m, slot_steps=None):
            return torch.full_like(x, -1.0, dtype=torch.float32)  # h_pred -> "dist" logits

    es.trainer, es._latent_mixing = FakeTrainer(), False
    hidden = torch.ones(1, 2)  # -> "ref" logits
    for u, want in ((float(1 - p1) - 1e-4, 0), (float(1 - p1) + 1e-4, 1)):
        view = StepView(step=1, hidden=hidden, uniform=torch.tensor([u], dtype=torch.float64),
                        rows=torch.tensor([0]), active=torch.tensor([True]), lm=FakeLM(), taps=(hidden, hidden))
        assert int(es.choose(view).tokens[0]) == want
    # naive subtraction: ref - beta * dist = [0.5, 1.5] on kept -> p1 = sigmoid(1.0)
    es.fusion = "naive"
    p1n = torch.sigmoid(torch.tensor(1.0))
    for u, want in ((float(1 - p1n) - 1e-4, 0), (float(1 - p1n) + 1e-4, 1)):
        view = StepView(step=1, hidden=hidden, uniform=torch.tensor([u], dtype=torch.float64),
                        rows=torch.tensor([0]), active=torch.tensor([True]), lm=FakeLM(), taps=(hidden, hidden))
        assert int(es.choose(view).tokens[0]) == want


def test_latent_mixing_equals_logit_fusion(tiny_lm):
    torch.manual_seed(0)
    h = torch.randn(5, tiny_lm.hidden_size)
    h_pred = torch.randn(5, tiny_lm.hidden_size)
    beta = 0.25
    head = tiny_lm.lm_head
    assert head.bias is None
    mixed = head((1 + beta) * h - beta * h_pred)
    fused = (1 + beta) * head(h) - beta * head(h_pred)
    assert torch.allclose(mixed, fused, atol=1e-4)
    # and end to end: the two ESamp paths produce the same tokens (float32 tiny model)
    a = gen(tiny_lm, ESampSampler(n=3, beta=0.3, latent_mixing=True))
    b = gen(tiny_lm, ESampSampler(n=3, beta=0.3, latent_mixing=False))
    assert toks(a) == toks(b)


def test_serial_and_async_give_the_same_tokens(peaked_lm):
    a = gen(peaked_lm, ESampSampler(n=3, beta=0.5, trainer="serial"), n_tokens=30)
    b = gen(peaked_lm, ESampSampler(n=3, beta=0.5, trainer="async"), n_tokens=30)
    assert toks(a) == toks(b)
    assert a.telemetry["loss_curve"] == pytest.approx(b.telemetry["loss_curve"], rel=1e-5)


@pytest.mark.parametrize("ablation", [dict(state="shared"), dict(fusion="naive"), dict(error="noise"),
                                      dict(variant="tllm"),
                                      dict(fusion_order="tllm", top_p=0.95, temperature=0.7)])
def test_each_ablation_changes_the_output(peaked_lm, ablation):
    # (the two fusion orders coincide at T = 1; they differ in whether the distiller logit is scaled by T)
    ref_kw = dict(n=3, beta=0.5)
    ref_kw.update({k: v for k, v in ablation.items() if k in ("top_p", "temperature")})
    ref = gen(peaked_lm, ESampSampler(**ref_kw), n_tokens=30)
    out = gen(peaked_lm, ESampSampler(**{**ref_kw, **ablation}), n_tokens=30)
    assert toks(out) != toks(ref)


def test_esamp_samples_are_batch_invariant(peaked_lm):
    es = ESampSampler(n=3, beta=0.5)
    together = gen(peaked_lm, es)
    alone = generate(peaked_lm, es, PROMPTS[1:2], IDS[1:2], max_new_tokens=24, seed=3, ignore_eos=True)
    assert toks(alone)[0] == toks(together)[1]


def test_distiller_learns_during_generation(peaked_lm):
    # A random tiny model's states are hard to predict at the paper's lr in 60 steps; a larger lr checks
    # the mechanics here (the real-model run in the closing note shows the paper setting learning).
    out = gen(peaked_lm, ESampSampler(n=4, beta=0.25, distiller={"lr": 1e-2}), n_tokens=60)
    curve = out.telemetry["loss_curve"]
    assert out.telemetry["train_steps"] == 59  # every decode step after the first trains once
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_zero_training_steps_is_an_error(tiny_lm):
    es = ESampSampler(n=2)
    out = generate(tiny_lm, es, PROMPTS[:1], IDS[:1], max_new_tokens=1)
    with pytest.raises(RuntimeError, match="0 Distiller training steps"):
        es.summarize([out.telemetry])


@pytest.mark.parametrize("kw,key", [(dict(beta=-0.1), "beta"), (dict(state="global"), "state"),
                                    (dict(fusion="x"), "fusion"), (dict(error="gauss"), "error"),
                                    (dict(variant="v2"), "variant"), (dict(trainer="threads"), "trainer")])
def test_bad_options_fail_with_the_key(kw, key):
    with pytest.raises(ValueError, match=f"sampler.{key}="):
        ESampSampler(**kw)
