"""The Distiller's telemetry: sized per run, pre-clip gradient norms, Adam's eps regime, error along h,
and the study switches (input RMS norm, output bias from the prompt)."""
import pytest
import torch

from esamp.samplers.esamp.distiller import DistillerBank
from esamp.generation import generate
from esamp.samplers.esamp.trainer import OnlineTrainer
from tests.conftest import make_sampler

try:
    from tests.test_trainer import H, I, stream
except ImportError:
    from test_trainer import H, I, stream


def _trainer(**kw) -> OnlineTrainer:
    torch.manual_seed(0)
    return OnlineTrainer(DistillerBank("paper", 2, H, intermediate=I), **kw)


def test_a_reused_sampler_sizes_its_telemetry_per_run(peaked_lm):
    """A second, longer generate() with the same sampler keeps one curve column per step (before the fix the
    buffers kept the first run's length and every later step was clamped into the last column)."""
    prompts, ids = ["a short prompt", "another prompt here"], ["p0", "p1"]
    reused = make_sampler("esamp", n=2)
    generate(peaked_lm, reused, prompts, ids, max_new_tokens=6, seed=0, ignore_eos=True)
    second = generate(peaked_lm, reused, prompts, ids, max_new_tokens=20, seed=0, ignore_eos=True).telemetry
    fresh = generate(peaked_lm, make_sampler("esamp", n=2), prompts, ids, max_new_tokens=20, seed=0,
                     ignore_eos=True).telemetry
    assert len(second["loss_curve"]) == len(fresh["loss_curve"]) == 19  # steps 1..19 train
    assert second["loss_curve"] == pytest.approx(fresh["loss_curve"], rel=1e-6)
    assert second["count_curve"] == [2] * 19


def test_grad_norm_is_the_pre_clip_norm_of_a_standalone_copy():
    """Step 0's recorded norm per slot equals clip_grad_norm_'s return value on a standalone autograd copy of
    that slot's loss, and is recorded whether or not clipping is on."""
    (src, tgt, mask), = stream(1, 2, 4, p_active=1.0)
    for clip in (0.5, 0.0):
        tr = _trainer(grad_clip=clip)
        params = [p.detach().clone().requires_grad_(True) for p in tr.bank.parameters()]
        tr.step(src, tgt, mask)
        want = []
        for s in range(2):
            w = [p[s] for p in params]
            x = src[s]
            for gu, down in ((w[0], w[1]), (w[2], w[3])):
                gate, up = (x @ gu).chunk(2, dim=-1)
                x = x + (torch.nn.functional.silu(gate) * up) @ down
            loss = (x - tgt[s]).square().mean(-1).mean()
            grads = torch.autograd.grad(loss, w)
            want.append(torch.stack([g.norm() for g in grads]).square().sum().sqrt().item())
        st = tr.stats()
        assert st["grad_norm_curve"][0] == pytest.approx(sum(want) / 2, rel=1e-4)
        assert st["grad_clip"] == clip


def test_eps_damped_share_tracks_adams_regime():
    """Share of Adam elements with sqrt(v_hat) < eps: all of them with a huge eps, none with a tiny one
    (every element gets a non-zero gradient here), and in between for the paper's 1e-4 on small targets."""
    data = stream(3, 2, 4, p_active=1.0, scale=1.0)
    shares = {}
    for eps in (1e3, 1e-4, 1e-30):
        tr = _trainer(eps=eps)
        for s, t, m in data:
            tr.step(s, 1e-3 * t, m)  # small targets: small gradients, where eps starts to matter
        shares[eps] = tr.stats()["eps_damped_curve"]
    assert shares[1e3] == pytest.approx([1.0] * 3)
    assert max(shares[1e-30]) < 0.01
    assert 0.0 < shares[1e-4][0] <= 1.0 and shares[1e-4] != shares[1e3]


def test_error_along_h_is_one_for_a_prediction_of_zero_and_zero_for_a_perfect_one():
    """<e, h> / ||h||^2 with e = h - h_pred: a Distiller that outputs ~0 has its error along h (1); one that
    outputs h exactly has none (0)."""
    (src, tgt, mask), = stream(1, 2, 4, p_active=1.0)
    tr = _trainer()
    tr.step(1e-6 * src, 1e3 * tgt, mask)  # prediction ~ 1e-6 * src, negligible next to the target
    assert tr.stats()["err_along_h_curve"][0] == pytest.approx(1.0, abs=1e-6)
    tr = _trainer()
    pred = tr.bank(src)  # the target IS the current prediction
    tr.step(src, pred.detach(), mask)
    assert tr.stats()["err_along_h_curve"][0] == pytest.approx(0.0, abs=1e-5)


def test_input_rms_norm_makes_the_prediction_invariant_to_the_input_scale():
    torch.manual_seed(0)
    bank = DistillerBank("paper", 2, H, intermediate=I, input_norm="rms")
    x = torch.randn(2, 3, H)
    torch.testing.assert_close(bank(x), bank(40.0 * x), atol=1e-4, rtol=1e-4)
    plain = DistillerBank("paper", 2, H, intermediate=I)
    plain.load_state_dict(bank.state_dict())
    assert not torch.allclose(plain(x), plain(40.0 * x) / 40.0, atol=1e-3)


def test_output_bias_from_the_prompt_is_set_at_admission_and_off_by_default(peaked_lm):
    """output_bias=prompt (an extension): the slot's bias is the mean of the prompt's own final normed states,
    so the first decode prediction starts there; with it off, the bank has no such parameter at all (the
    paper's parameter set, the paper's tokens)."""
    s = make_sampler("esamp", n=2, distiller={"output_bias": "prompt"})
    prompt = "the prompt whose states set the bias"
    generate(peaked_lm, s, [prompt], ["p"], max_new_tokens=3, seed=0, ignore_eos=True)
    with torch.no_grad():
        states = peaked_lm.decoder(input_ids=torch.tensor([peaked_lm.encode(prompt)])).last_hidden_state[0]
    bias = s.trainer.bank.out_bias[0, 0]
    # two Adam steps of lr 4e-4 moved it by at most ~1e-3 per element
    torch.testing.assert_close(bias, states.float().mean(0), atol=2e-3, rtol=0)
    assert "out_bias" not in dict(make_sampler("esamp", n=2).describe()["distiller"])
    assert not hasattr(DistillerBank("paper", 1, H, intermediate=I), "out_bias")
    with pytest.raises(ValueError, match="output_bias=prompt is invalid with sampler.variant=tllm"):
        make_sampler("esamp", n=2, variant="tllm", distiller={"output_bias": "prompt"})


def test_a_frozen_distiller_keeps_its_initial_weights_and_still_reports():
    """The mechanism control `sampler.distiller.lr=0`: the paper's initialisation as a fixed transform (same
    prediction for the same input at every step), while its telemetry still runs."""
    data = stream(5, 2, 4, p_active=1.0)
    tr = _trainer(lr=0.0)
    before = [p.detach().clone() for p in tr.bank.parameters()]
    src0 = data[0][0]
    first = tr.step(*data[0])
    for s, t, m in data[1:]:
        tr.step(s, t, m)
    assert all(torch.equal(a, b) for a, b in zip(before, tr.bank.parameters()))
    torch.testing.assert_close(tr.step(src0, data[0][1], data[0][2]), first, atol=0, rtol=0)
    assert tr.stats()["update_steps"] == 6 and tr.stats()["grad_norm_curve"][0] > 0


def test_frozen_arm_config_composes():
    from hydra import compose, initialize_config_dir

    from esamp.pipeline import build
    from tests.conftest import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["sampler=esamp", "sampler.distiller.lr=0"])
    s = build(cfg, "sampler")
    assert s.distiller_cfg == {"lr": 0.0} or s.distiller_cfg == {"lr": 0}
    assert s.describe()["distiller"]["lr"] == 0
