"""Contrastive decoding on tiny random models (same byte tokenizer, different weights): the score and the
plausibility cut on hand values, the amateur's own KV path against plain forwards, batch invariance, and
config errors that name the key."""
import math
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from esamp.generation import generate
from esamp.models import load_model, random_model_from_config
from esamp.pipeline import ConfigError, build
from esamp.samplers.base import StepView
from esamp.samplers.contrastive import ContrastiveSampler
from esamp.samplers.truncation import truncate
from tests.conftest import ROOT, make_sampler, tiny_cfg

PROMPTS = ["Hi", "The quick brown fox jumps over", "A longer prompt: the amateur's row cache must grow for it.",
           "The longest prompt of all four, entering a slot while the other slot is still mid-generation."]
IDS = ["p0", "p1", "p2", "p3"]


@pytest.fixture(scope="module")
def sharp_lm():
    """Peaked enough that V_head (alpha 0.1) holds a handful of tokens, not the whole byte vocabulary."""
    return load_model(tiny_cfg(init_scale=16.0, seed=1))


@pytest.fixture(scope="module")
def pair():
    """Expert and amateur: same architecture and byte tokenizer, different random weights. Five frequent
    tokens of this expert also count as EOS, so rows end at different steps with EOS on (slots refill
    while others are mid-generation; the amateur's rows must follow)."""
    expert = load_model(tiny_cfg(init_scale=8.0, seed=1))
    amateur = load_model(tiny_cfg(init_scale=8.0, seed=2, name="tiny-amateur"))
    probe = generate(expert, make_sampler("contrastive", amateur=amateur, n=4), PROMPTS, IDS, max_new_tokens=16,
                     seed=11,
                     ignore_eos=True)
    counts = torch.bincount(torch.tensor([t for rows in probe.prompts for r in rows for t in r.token_ids]))
    extra = counts.argsort(descending=True)[:5].tolist()
    expert.model.generation_config.eos_token_id = [expert.tokenizer.eos_token_id, *extra]
    return expert, amateur


def tokens_by_id(out, ids):
    return {pid: [r.token_ids for r in rows] for pid, rows in zip(ids, out.prompts)}


# ---------------------------------------------------------------------------------------------- (4) the score
E = torch.tensor([[0.5, 0.3, 0.04, 0.16]]).log()   # expert probabilities; alpha 0.1 cuts token 2 (0.04 < 0.05)
A = torch.tensor([[0.6, 0.1, 0.01, 0.29]]).log()   # token 2 has the best ratio (4.0): only the cut removes it
INF = float("-inf")


class Stub(ContrastiveSampler):
    """No models: the expert's logits are the view's hidden state (identity head), the amateur's are given."""

    def __init__(self, amateur, **kw):  # `amateur`: the amateur's logits, in place of a model
        super().__init__(amateur={"source": "stub"}, **kw)
        self.given = amateur

    def amateur_logits(self, view):
        return self.given.expand(view.hidden.shape[0], -1)


def stub_view(expert, uniforms):
    u = torch.tensor(uniforms, dtype=torch.float64)
    return StepView(hidden=expert.expand(len(u), -1), uniform=u, rows=torch.arange(len(u)),
                    active=torch.ones(len(u), dtype=torch.bool), row_steps=torch.ones(len(u), dtype=torch.long),
                    lm=SimpleNamespace(lm_head=lambda h: h))


def test_plausibility_cut_and_scores_on_hand_values():
    li = make_sampler("contrastive", amateur={"source": "stub"}, alpha=0.1, formula="li").scores(E, A)
    expected = torch.tensor([[math.log(0.5 / 0.6), math.log(0.3 / 0.1), INF, math.log(0.16 / 0.29)]])
    assert torch.allclose(li, expected, atol=1e-6) and li[0, 2] == INF
    # alpha moves the cut: 0.35 keeps p >= 0.175 (tokens 0, 1); 1 keeps only the expert's argmax
    def li_scores(alpha):
        return make_sampler("contrastive", amateur={"source": "s"}, alpha=alpha, formula="li").scores(E, A)

    assert torch.isfinite(li_scores(0.35)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(li_scores(1.0)).tolist() == [[True, False, False, False]]
    # alpha small enough keeps everything, and token 2 then wins the contrast
    assert li_scores(0.01).argmax().item() == 2
    # O'Brien & Lewis on logits, and the amateur's temperature
    ob = make_sampler("contrastive", amateur={"source": "s"}, formula="obrien", beta=0.5).scores(E, A)
    assert torch.allclose(ob, torch.where(torch.isfinite(li), 1.5 * E - 0.5 * A, INF), atol=1e-6)
    hot = make_sampler("contrastive", amateur={"source": "s"}, amateur_temperature=2.0, formula="li").scores(E, A)
    assert torch.allclose(hot, torch.where(torch.isfinite(li), E.log_softmax(-1) - (A / 2).log_softmax(-1), INF),
                          atol=1e-6)


def test_padded_heads_are_cut_to_the_shared_vocabulary():
    s = make_sampler("contrastive", amateur={"source": "s"}, alpha=0.1)
    padded_amateur = torch.cat([A, torch.full((1, 3), 50.0)], -1)   # amateur head longer: extra columns ignored
    assert torch.equal(s.scores(E, padded_amateur), s.scores(E, A))
    padded_expert = torch.cat([E, torch.full((1, 2), -30.0)], -1)   # expert head longer: extra columns never chosen
    got = s.scores(padded_expert, A)
    assert got.shape == (1, 6) and torch.equal(got[:, :4], s.scores(E, A)) and (got[:, 4:] == INF).all()


def test_choose_samples_the_score_inside_v_head_only():
    # weights exp(score) on V_head: 0.5/0.6, 3, 0, 0.16/0.29 -> CDF 0.190, 0.874, 0.874, 1
    uniforms = [0.0, 0.1, 0.2, 0.5, 0.87, 0.875, 0.99, 1 - 1e-12]
    got = make_sampler("contrastive", as_class=Stub, amateur=A, alpha=0.1, temperature=1.0,
                       formula="li").choose(stub_view(E, uniforms)).tokens.tolist()
    assert got == [0, 0, 1, 1, 1, 3, 3, 3]
    assert make_sampler("contrastive", as_class=Stub, amateur=A, alpha=0.1, temperature=0.0,
                        formula="li").choose(stub_view(E, [0.5])).tokens.tolist() == [1]  # greedy CD
    # the base sampler's temperature and filters act on the score: top_k=1 is greedy again
    top1 = make_sampler("contrastive", as_class=Stub, amateur=A, alpha=0.1, top_k=1, formula="li")
    assert top1.choose(stub_view(E, uniforms)).tokens.tolist() == [1] * len(uniforms)
    score = make_sampler("contrastive", amateur={"source": "s"}).scores(E, A)
    assert torch.equal(make_sampler("contrastive", as_class=Stub, amateur=A, temperature=0.5,
                                    top_p=0.9).filtered(score), truncate(score / 0.5, top_p=0.9))


# ---------------------------------------------------------------------------------------------- (1) amateur == expert
class Recording(ContrastiveSampler):
    """The sampler itself, also recording what each choose saw: (problem id, sample, step, expert logits,
    amateur logits, uniform, token) for every active row."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen = []

    def choose(self, view):
        self._expert = view.logits()
        choice = super().choose(view)
        n = self.n
        phys = list(range(view.slot * n, (view.slot + 1) * n)) if view.prefill else list(range(len(view.rows)))
        steps = view.row_steps.tolist()
        for i, (r, t) in enumerate(zip(phys, steps)):
            if view.active[i]:
                self.seen.append((self._slot_problem[r // n], r % n, t, self._expert[i], self._last_amateur[i],
                                  float(view.uniform[i]), int(choice.tokens[i])))
        return choice

    def amateur_logits(self, view):
        self._last_amateur = super().amateur_logits(view)
        return self._last_amateur


def test_amateur_equal_to_expert_samples_v_head_uniformly(sharp_lm):
    """Same weights, formula li: log p_e - log p_a = 0 on V_head, so CD samples V_head uniformly."""
    n, alpha = 2000, 0.1
    prompt = sharp_lm.render([{"role": "user", "content": "Pick a number."}])
    cd = make_sampler("contrastive", as_class=Recording, amateur=sharp_lm, n=n, alpha=alpha, formula="li")
    out = generate(sharp_lm, cd, [prompt], ["q"], max_new_tokens=1, seed=5, ignore_eos=True)
    first = torch.tensor([r.token_ids[0] for r in out.prompts[0]])
    with torch.no_grad():  # V_head from a plain forward, not through the sampler
        p = sharp_lm.model(torch.tensor([sharp_lm.encode(prompt)])).logits[0, -1].float().softmax(-1)
    head = (p >= alpha * p.max()).nonzero().squeeze(-1)
    k = len(head)
    assert 3 <= k <= 30 and set(first.tolist()) <= set(head.tolist())
    # inverse CDF of the uniform over V_head: row with uniform u takes the floor(u * k)-th head token
    u = torch.tensor([s[5] for s in cd.seen], dtype=torch.float64)
    sample_index = torch.tensor([s[1] for s in cd.seen])
    chosen = torch.tensor([s[6] for s in cd.seen])
    assert torch.equal(chosen, first[sample_index])
    clear = ((u * k) - (u * k).round()).abs() > 1e-4                 # away from a CDF step
    assert clear.sum() > n * 0.99
    assert torch.equal(chosen[clear], head[(u[clear] * k).floor().long()])
    # and the frequencies match 1/k within 4.5 standard errors
    freq = torch.bincount(first, minlength=len(p))[head].double() / n
    se = math.sqrt((1 / k) * (1 - 1 / k) / n)
    assert ((freq - 1 / k).abs() <= 4.5 * se).all(), (freq, 1 / k)
    # later steps: every token stays in its V_head, the amateur's decode logits equal the loop's expert ones
    cd = make_sampler("contrastive", as_class=Recording, amateur=sharp_lm, n=6, alpha=alpha, formula="li")
    generate(sharp_lm, cd, PROMPTS[:3], IDS[:3], max_new_tokens=10, seed=2, batch_prompts=2, ignore_eos=True)
    assert len(cd.seen) == 3 * 6 * 10
    for _, _, step, expert, amateur, _, token in cd.seen:
        assert torch.allclose(amateur, expert, atol=1e-4)
        pe = expert.softmax(-1)
        assert pe[token] >= alpha * pe.max()


# ---------------------------------------------------------------------------------------------- (2) the amateur KV path
def test_amateur_logits_equal_a_plain_forward(pair):
    """Every amateur logit the sampler used (prefills, decode steps, slots refilled mid-run, a cache grown
    for longer prompts, a slot leaving at the end) equals a full forward of the amateur on the row's prompt +
    the tokens generated before that step."""
    expert, amateur = pair
    cd = make_sampler("contrastive", as_class=Recording, amateur=amateur, n=3, alpha=0.1,
                      formula="li")  # li: its rows end at steps that make a slot leave
    out = generate(expert, cd, PROMPTS, IDS, max_new_tokens=16, seed=6, batch_prompts=2)
    reasons = {r.finish_reason for rows in out.prompts for r in rows}
    assert "eos" in reasons and out.stats.admissions == 4 and out.stats.compactions >= 1
    assert out.stats.steps < 2 * 16  # a prompt entered while the other slot was mid-generation
    assert cd._stream.cache.width > len(amateur.encode(PROMPTS[0])) + 16  # it grew
    checked = 0
    for pid, prompt, rows in zip(IDS, PROMPTS, out.prompts):
        for r in rows:
            ids = amateur.encode(prompt) + r.token_ids
            with torch.no_grad():
                ref = amateur.model(torch.tensor([ids])).logits[0].float()
            seen = {s[2]: s[4] for s in cd.seen if s[0] == pid and s[1] == r.sample_index}
            assert sorted(seen) == list(range(r.num_tokens))  # one record per generated token
            for step, logits in seen.items():
                assert torch.allclose(logits, ref[len(ids) - r.num_tokens - 1 + step], atol=1e-4), (pid, step)
                checked += 1
    assert checked == sum(r.num_tokens for rows in out.prompts for r in rows)


# ---------------------------------------------------------------------------------------------- (3) batch invariance
@pytest.mark.parametrize("formula", ["li", "obrien"])
def test_samples_do_not_depend_on_the_batch(pair, formula):
    expert, amateur = pair
    kw = dict(n=3, alpha=0.1, formula=formula)
    two = generate(expert, make_sampler("contrastive", amateur=amateur, **kw), PROMPTS, IDS, max_new_tokens=16, seed=3,
                   batch_prompts=2)
    rev = generate(expert, make_sampler("contrastive", amateur=amateur, **kw), PROMPTS[::-1], IDS[::-1],
                   max_new_tokens=16,
                   seed=3, batch_prompts=3)
    ref = tokens_by_id(two, IDS)
    assert tokens_by_id(rev, IDS[::-1]) == ref
    for prompt, pid in zip(PROMPTS, IDS):
        alone = generate(expert, make_sampler("contrastive", amateur=amateur, **kw), [prompt], [pid],
                         max_new_tokens=16, seed=3)
        assert tokens_by_id(alone, [pid]) == {pid: ref[pid]}
    lengths = {len(t) for rows in ref.values() for t in rows}
    assert len(lengths) > 2 and min(lengths) < 16  # EOS on and rows ending at different steps
    # and the contrast does change the samples (vs the expert's own temperature sampling with the cut only)
    own = generate(expert, make_sampler("contrastive", amateur=expert, **kw), PROMPTS, IDS, max_new_tokens=16, seed=3,
                   batch_prompts=2)
    assert tokens_by_id(own, IDS) != ref


# ---------------------------------------------------------------------------------------------- (5) config errors
@pytest.mark.parametrize("kw,key", [
    (dict(alpha=0), "alpha"),
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(alpha=None), "alpha"),
    (dict(alpha="x"), "alpha"),
    (dict(formula="lee"), "formula"),
    (dict(formula=None), "formula"),
    (dict(beta=-1), "beta"),
    (dict(beta=float("nan")), "beta"),
    (dict(amateur_temperature=0), "amateur_temperature"),
    (dict(amateur=None), "amateur"),
    (dict(amateur={"name": "no source"}), "amateur"),
    (dict(temperature=-1), "temperature"),  # the base sampler's own checks still apply
    (dict(n=0), "n"),
])
def test_bad_options_fail_with_the_key(kw, key):
    with pytest.raises(ValueError) as err:
        make_sampler("contrastive", **{"amateur": {"source": "tiny_random"}, **kw})
    msg = str(err.value)
    assert msg.startswith(f"sampler.{key}=") and "allowed" in msg and "\n" not in msg


def test_vocabulary_mismatch_fails_when_the_batch_begins(tiny_lm):
    other = load_model(tiny_cfg(seed=3))
    other.tokenizer.add_tokens(["<extra>"])  # a different tokenizer
    with pytest.raises(ValueError) as err:
        generate(tiny_lm, make_sampler("contrastive", amateur=other, n=2), ["Hi"], ["a"], max_new_tokens=2)
    msg = str(err.value)
    assert msg.startswith("sampler.amateur=") and "tokenizer" in msg and "\n" not in msg
    # same tokenizer, but a head smaller than it (some tokens would have no amateur logit)
    from transformers import LlamaConfig

    small = random_model_from_config(LlamaConfig(vocab_size=200, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1),
                                     dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^sampler\.amateur=.*do not cover") as err:
        generate(tiny_lm, make_sampler("contrastive", amateur=small, n=2), ["Hi"], ["a"], max_new_tokens=2)
    assert "\n" not in str(err.value)


def test_config_composes_without_loading_and_errors_name_the_key():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["sampler=contrastive", "model=qwen2.5-coder-1.5b-pypi"])
        smoke = compose("config", overrides=["experiment=contrastive_smoke", "sampler.formula=li"])
        bad = compose("config", overrides=["sampler=contrastive", "sampler.alpha=0"])
    assert cfg.sampler.amateur.name == "qwen2.5-coder-0.5b-instruct" and len(cfg.model.parts) == 22
    sampler = build(cfg, "sampler")  # nothing loads before the batch begins
    assert isinstance(sampler, ContrastiveSampler) and sampler.amateur is None
    d = sampler.describe()
    assert d["name"] == "contrastive" and d["alpha"] == 0.1 and d["formula"] == "obrien" and d["n"] == 8
    assert d["amateur"] == "qwen2.5-coder-0.5b-instruct" and d["order"].startswith("V_head")
    assert make_sampler("contrastive", amateur={"source": "s"}).formula == "obrien"  # the form published for sampling
    s = build(smoke, "sampler")
    assert s.formula == "li" and s.amateur_cfg["source"] == "tiny_random" and s.amateur_cfg["seed"] == 1
    with pytest.raises(ConfigError, match=r"sampler\.alpha=0 is invalid"):
        build(bad, "sampler")


def test_telemetry_reports_the_mean_head_size(pair):
    expert, amateur = pair
    s = make_sampler("contrastive", amateur=amateur, n=2, alpha=0.1)
    out = generate(expert, s, PROMPTS[:2], IDS[:2], max_new_tokens=6, seed=1, ignore_eos=True)
    summary = s.summarize([out.telemetry])
    assert summary["amateur"] == "tiny-amateur" and summary["row_steps"] == 2 * 2 * 6
    assert 1 <= summary["mean_head_size"] <= len(expert.tokenizer)
