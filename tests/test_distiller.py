"""DistillerBank: shapes, dtypes, per-slot forward against a plain-tensor reference, init and resets."""

import pytest
import torch
import torch.nn.functional as F

from esamp.samplers.esamp.distiller import DistillerBank

H, I, RANK, S, R = 32, 48, 8, 3, 5


def ref_forward(kind: str, p: dict, x: torch.Tensor) -> torch.Tensor:
    """One standalone Distiller (weights of one slot, no slot dim), written from the method's formulas."""
    if kind == "paper":
        n = p["w_down1"].shape[0]
        wg1, wu1 = p["w_gu1"][:, :n], p["w_gu1"][:, n:]  # x @ W  ==  W_linear x
        wg2, wu2 = p["w_gu2"][:, :n], p["w_gu2"][:, n:]
        y1 = x + (F.silu(x @ wg1) * (x @ wu1)) @ p["w_down1"]
        return y1 + (F.silu(y1 @ wg2) * (y1 @ wu2)) @ p["w_down2"]
    r = p["w_b"].shape[0]
    A, G = p["w_ag"][:, :r], p["w_ag"][:, r:]
    y = x + ((x @ A) * F.silu(x @ G + p["gate_bias"][0])) @ p["w_b"]
    mu = y.mean(-1, keepdim=True)
    var = ((y - mu) ** 2).mean(-1, keepdim=True)
    return (y - mu) / torch.sqrt(var + 1e-5) * p["ln_weight"][0] + p["ln_bias"][0]


def slot_params(bank: DistillerBank, s: int) -> dict:
    return {name: p[s].detach().clone() for name, p in bank.named_parameters()}


def make_bank(kind: str, seed: int = 0, **kw) -> DistillerBank:
    torch.manual_seed(seed)
    return DistillerBank(kind, S, H, intermediate=I, rank=RANK, **kw)


@pytest.mark.parametrize("kind", ["paper", "tllm"])
def test_forward_matches_standalone_reference_per_slot(kind):
    bank = make_bank(kind)
    with torch.no_grad():  # make the LayerNorm affine / gate bias non-trivial so they are checked too
        for p in bank.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(S, R, H)
    y = bank(x)
    assert y.shape == (S, R, H) and y.dtype == torch.float32
    for s in range(S):
        torch.testing.assert_close(y[s], ref_forward(kind, slot_params(bank, s), x[s]), atol=1e-5, rtol=1e-5)
    # slots really differ (a bank that broadcast slot 0 would fail the loop above for s > 0 too)
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("kind", ["paper", "tllm"])
def test_params_float32_and_bf16_input(kind):
    bank = make_bank(kind)
    assert all(p.dtype == torch.float32 and p.shape[0] == S for p in bank.parameters())
    x = torch.randn(S, R, H)
    y16 = bank(x.to(torch.bfloat16))
    assert y16.dtype == torch.float32
    torch.testing.assert_close(y16, bank(x.to(torch.bfloat16).float()))
    assert all(p.dtype == torch.float32 for p in bank.parameters())


def test_shapes_and_param_count():
    paper, tllm = make_bank("paper"), make_bank("tllm")
    shapes = {n: tuple(p.shape) for n, p in paper.named_parameters()}
    assert shapes == {"w_gu1": (S, H, 2 * I), "w_down1": (S, I, H), "w_gu2": (S, H, 2 * I), "w_down2": (S, I, H)}
    assert paper.param_count(per_slot=True) == 2 * (3 * H * I)
    assert paper.param_count() == S * 2 * (3 * H * I)
    assert tllm.param_count(per_slot=True) == 3 * H * RANK + RANK + 2 * H
    assert "kind=tllm" in repr(tllm) and f"rank={RANK}" in repr(tllm)
    with pytest.raises(ValueError, match="S=3"):
        paper(torch.randn(S + 1, R, H))


def test_kind_validation_lists_allowed():
    with pytest.raises(ValueError, match="paper, tllm"):
        DistillerBank("mlp", 1, H)


def test_init_distributions():
    torch.manual_seed(0)
    paper = DistillerBank("paper", 8, 256, intermediate=384)
    bound = 1 / 256 ** 0.5
    assert paper.w_gu1.abs().max() <= bound and paper.w_gu1.abs().max() > 0.95 * bound
    assert paper.w_down1.abs().max() <= 1 / 384 ** 0.5
    assert paper.w_down1.std() > 0.5 / 384 ** 0.5  # random, not zero (the default "linear" init)
    zero = DistillerBank("paper", 2, H, intermediate=I, init_down="zero")
    x = torch.randn(2, R, H)
    torch.testing.assert_close(zero(x), x)  # zero-init down projections: identity at start
    tllm = DistillerBank("tllm", 8, 256, rank=64)
    assert abs(tllm.w_ag.std().item() - 0.02) < 0.002 and abs(tllm.w_b.std().item() - 0.02) < 0.002
    assert torch.equal(tllm.gate_bias, torch.ones_like(tllm.gate_bias))
    assert torch.equal(tllm.ln_weight, torch.ones_like(tllm.ln_weight))
    assert torch.equal(tllm.ln_bias, torch.zeros_like(tllm.ln_bias))


@pytest.mark.parametrize("kind", ["paper", "tllm"])
def test_reset_fresh_weights_and_generator(kind):
    bank = make_bank(kind)
    before = [p.detach().clone() for p in bank.parameters()]
    bank.reset()
    w = "w_gu1" if kind == "paper" else "w_ag"
    assert not torch.equal(getattr(bank, w), before[0])
    bank.reset(torch.Generator().manual_seed(7))
    a = getattr(bank, w).detach().clone()
    bank.reset(torch.Generator().manual_seed(7))
    assert torch.equal(getattr(bank, w), a)
    # every slot gets its own draw
    assert not torch.equal(getattr(bank, w)[0], getattr(bank, w)[1])


def test_reset_slots_and_resize():
    bank = make_bank("paper")
    before = bank.w_gu1.detach().clone()
    bank.reset_slots([1])
    assert torch.equal(bank.w_gu1[0], before[0]) and torch.equal(bank.w_gu1[2], before[2])
    assert not torch.equal(bank.w_gu1[1], before[1])
    bank.resize(5)
    bank.reset()
    assert bank.num_slots == 5 and bank(torch.randn(5, 2, H)).shape == (5, 2, H)
