"""OverRIDE on tiny in-process models: lambda = 0 is plain sampling, round 0 is always plain, a token the
previous round produced loses probability by exactly (p / q)^lambda, guidance models are fresh per prompt and
a prompt's samples do not depend on its batch neighbours."""
import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from esamp.generation import generate
from esamp.pipeline import build, run
from esamp.samplers.base import BatchInfo, StepView
from esamp.samplers.override import OverrideSampler
from esamp.samplers.override_heads import INIT_STD, GuidanceHead
from esamp.seeding import prompt_generator
from tests.conftest import MATH_FIXTURE, ROOT, make_sampler, tiny_cfg

PROMPTS = ["Once upon a time", "The answer is", "In a hole in the ground there lived"]
IDS = ["p0", "p1", "p2"]
STEPS = 24


def tokens(out):
    return [[r.token_ids for r in rows] for rows in out.prompts]


@pytest.mark.parametrize("filters", [dict(), dict(temperature=0.7, top_p=0.9), dict(temperature=1.0, min_p=0.05)])
def test_lambda_zero_is_plain_sampling_token_for_token(peaked_lm, filters):
    sampler = make_sampler("override", n=4, lambd=0.0, learning_rate=0.1, **filters)
    out = generate(peaked_lm, sampler, PROMPTS, IDS, max_new_tokens=STEPS, seed=3, batch_prompts=2)
    plain = generate(peaked_lm, make_sampler("temperature", n=4, **filters), PROMPTS, IDS, max_new_tokens=STEPS, seed=3,
                     batch_prompts=2)
    assert tokens(out) == tokens(plain)
    tel = sampler.summarize([out.telemetry])  # the guidance models did train: lambda alone switched them off
    assert tel["train_steps"] > 0 and all(v > 0 for v in tel["round_adapter_norm"][:-1])
    assert tel["round_kl_to_base"][1:] == [0.0, 0.0, 0.0]


def test_round_zero_is_plain_and_later_rounds_are_reweighted(peaked_lm):
    sampler = make_sampler("override", n=4, lambd=1.0, learning_rate=0.1)
    out = generate(peaked_lm, sampler, PROMPTS, IDS, max_new_tokens=STEPS, seed=3, batch_prompts=2)
    plain = generate(peaked_lm, make_sampler("temperature", n=4), PROMPTS, IDS, max_new_tokens=STEPS, seed=3,
                     batch_prompts=2)
    assert [rows[0] for rows in tokens(out)] == [rows[0] for rows in tokens(plain)]  # no earlier round: unchanged
    # step 0 of every round: the guidance models have taken no step yet (B = 0), so the first tokens are plain
    assert [[r[0] for r in rows] for rows in tokens(out)] == [[r[0] for r in rows] for rows in tokens(plain)]
    later = [a != b for rows, base in zip(tokens(out), tokens(plain)) for a, b in zip(rows[1:], base[1:])]
    assert sum(later) >= 3, later
    tel = sampler.summarize([out.telemetry])
    assert tel["round_kl_to_base"][0] is None and all(v > 0 for v in tel["round_kl_to_base"][1:])
    # every guidance model but the last trained (its online loss is logged, its adapter moved off zero)
    assert all(v > 0 for v in tel["round_train_loss"][:-1] + tel["round_adapter_norm"][:-1])
    assert tel["round_train_loss"][-1] is None  # the last round trains nothing (no later round reads it)


@pytest.fixture(scope="module")
def sharp_lm():
    """A tiny random model with a sharp next-token distribution (as in test_fire)."""
    from esamp.models import load_model

    return load_model(tiny_cfg(init_scale=64.0, seed=1))


def _decode_view(lm, hidden, uniform, step):
    rows = torch.arange(hidden.shape[0])
    return StepView(hidden=hidden, uniform=uniform, rows=rows, active=torch.ones(hidden.shape[0], dtype=torch.bool),
                    row_steps=torch.full_like(rows, step), lm=lm)


def test_a_token_the_previous_round_produced_loses_probability_by_p_over_q_to_the_lambda(sharp_lm):
    lm = sharp_lm
    lam = 0.8
    sampler = make_sampler("override", n=2, lambd=lam, learning_rate=1e-3)  # the paper's settings
    sampler.begin(BatchInfo(lm=lm, num_prompts=1, n=2, max_new_tokens=64, device=torch.device("cpu"), seed=0))
    sampler.admit(0, "q")
    prompt = lm.encode(lm.render([{"role": "user", "content": "Pick a word."}]))
    with torch.no_grad():
        h = lm.decoder(input_ids=torch.tensor([prompt])).last_hidden_state[0, -1]
    hidden = h.expand(2, -1).contiguous()
    p = lm.lm_head(h).float().softmax(-1)
    top = int(p.argmax())
    assert p[top] > 0.3  # the premise: round 0 produces this token with high probability
    cdf = p.double().cumsum(0)
    u_top = float((cdf[top] - p[top] / 2) / cdf[-1])  # a uniform that lands in the top token's interval
    for step in range(20):  # round 0 (row 0) keeps producing `top`; round 1 (row 1) draws anything
        choice = sampler.choose(_decode_view(lm, hidden, torch.tensor([u_top, 0.5], dtype=torch.float64),
                                             step))
        assert int(choice.tokens[0]) == top

    head = sampler._slots[0].heads[0]
    with torch.no_grad():  # the guidance model by peft's own forward: W h + B A h
        q = head.module(h.float().unsqueeze(0))[0].softmax(-1)
        pi = sampler.reweighted_logits(lm.lm_head(hidden).float(), hidden, 0)[1].softmax(-1)
    # measured: p(top) 0.509, q(top) 0.692 after 20 steps at lr 1e-3, pi(top) 0.357 at lambda 0.8
    assert q[top] > p[top] + 0.05  # the guidance model learned what round 0 produced
    documented = p * (p / q) ** lam
    documented = documented / documented.sum()
    assert torch.allclose(pi, documented, atol=1e-6, rtol=1e-4)
    assert pi[top] < p[top] - 0.05  # ... and round 1 moves away from it
    assert float(pi[top] / p[top]) == pytest.approx(float((p[top] / q[top]) ** lam / (p * (p / q) ** lam).sum()),
                                                    rel=1e-4)


def test_shift_is_peft_forward_minus_the_base_logits(tiny_lm):
    head = GuidanceHead(tiny_lm.lm_head.weight, rank=4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        head.lora_b.weight.normal_()
        h = torch.randn(3, tiny_lm.hidden_size)
        assert torch.allclose(head.shift(h), head.module(h) - tiny_lm.lm_head(h), atol=1e-5)
        assert head.norm() == pytest.approx(float((head.lora_b.weight @ head.lora_a.weight).norm()), rel=1e-4)
    assert not tiny_lm.lm_head.weight.requires_grad or head.module.head.base_layer.weight.requires_grad is False
    assert head.module.head.base_layer.weight.data_ptr() == tiny_lm.lm_head.weight.data_ptr()  # shared, not copied


def test_guidance_models_start_fresh_for_each_prompt(peaked_lm):
    sampler = make_sampler("override", n=4, lambd=1.0, learning_rate=0.1)
    info = BatchInfo(lm=peaked_lm, num_prompts=1, n=4, max_new_tokens=8, device=torch.device("cpu"), seed=7)
    sampler.begin(info)
    sampler.admit(0, "p1")
    fresh = [h.lora_a.weight.clone() for h in sampler._slots[0].heads]
    gen = prompt_generator(7, "p1", torch.device("cpu"))
    expected_a0 = torch.randn(fresh[0].shape, generator=gen) * INIT_STD
    assert torch.equal(fresh[0], expected_a0) and all(float(h.lora_b.weight.detach().abs().max()) == 0
                                                      for h in sampler._slots[0].heads)
    # A prompt decoded after another one in the same slot gets the samples it gets alone.
    after = generate(peaked_lm, make_sampler("override", n=4, lambd=1.0, learning_rate=0.1), PROMPTS[:2], IDS[:2],
                     max_new_tokens=STEPS, seed=7, batch_prompts=1)
    alone = generate(peaked_lm, make_sampler("override", n=4, lambd=1.0, learning_rate=0.1), PROMPTS[1:2], IDS[1:2],
                     max_new_tokens=STEPS, seed=7, batch_prompts=1)
    assert tokens(after)[1] == tokens(alone)[0]


def test_samples_do_not_depend_on_batch_neighbours(peaked_lm):
    def make():
        return make_sampler("override", n=4, lambd=1.0, learning_rate=0.1, rounds=2)

    together = generate(peaked_lm, make(), PROMPTS, IDS, max_new_tokens=STEPS, seed=5, batch_prompts=3)
    for i in range(3):
        alone = generate(peaked_lm, make(), PROMPTS[i:i + 1], IDS[i:i + 1], max_new_tokens=STEPS, seed=5)
        assert tokens(together)[i] == tokens(alone)[0]


@pytest.mark.parametrize("kwargs,key", [
    (dict(n=4, rounds=3), "sampler.rounds"),
    (dict(lambd=-0.1), "sampler.lambd"),
    (dict(lambd=float("inf")), "sampler.lambd"),
    (dict(rank=0), "sampler.rank"),
    (dict(learning_rate=0), "sampler.learning_rate"),
    (dict(rounds=0), "sampler.rounds"),
])
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_sampler("override", **kwargs)


def test_run_records_every_setting_and_the_training_telemetry(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny-random", f"task.data_path={MATH_FIXTURE}",
                                           "task.max_new_tokens=8", "task.limit=2", "sampler=override",
                                           "sampler.n=4", "sampler.rounds=2"])
    assert isinstance(build(cfg, "sampler"), OverrideSampler)
    run(cfg, out_dir=tmp_path)
    summary = json.loads((tmp_path / "results.json").read_text())
    tel, described = summary["sampler_telemetry"], summary["sampler"]
    for key, value in dict(name="override", lambd=0.8, rounds=2, samples_per_round=2, rank=16, lora_alpha=16,
                           learning_rate=1e-3, temperature=1.0).items():
        assert described[key] == value and tel[key] == value
    assert tel["prompts"] == 2 and tel["train_steps"] > 0 and tel["train_seconds"] > 0
    assert tel["round_train_loss"][0] > 0 and tel["round_adapter_norm"][0] > 0 and tel["round_kl_to_base"][1] >= 0
    assert "A ~ N(0, 0.02)" in described["adapter"] and "logits - lambd" in described["formula"]
