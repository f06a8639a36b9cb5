"""The decoding loop on a tiny random model: determinism, per-row randomness, padding, stopping."""
import pytest
import torch

from esamp.generation import Finish, generate
from esamp.models import load_model
from esamp.samplers.base import Choice
from esamp.samplers.esamp.taps import HiddenTaps
from esamp.samplers.esamp import ESampSampler
from esamp.samplers.fire import FireSampler
from esamp.samplers.truncation import TruncationSampler
from esamp.seeding import row_uniforms
from tests.conftest import make_sampler, tiny_cfg

PROMPTS = ["The quick brown fox jumps over", "Hi", "A much longer prompt, so that the left padding of the others "
           "is substantial and the positions must be right for every row."]


def texts(out):
    return [[r.token_ids for r in rows] for rows in out.prompts]


def test_forward_matches_hf_logits(tiny_lm):
    """Our step (decoder + LM head on the last position) equals the model's own forward."""
    ids = torch.tensor([tiny_lm.encode("hello world")])
    ref = tiny_lm.model(ids).logits[:, -1]
    hidden = tiny_lm.decoder(input_ids=ids).last_hidden_state[:, -1]
    assert torch.allclose(tiny_lm.lm_head(hidden), ref, atol=1e-5)


def test_same_seed_same_samples_and_seed_changes_them(tiny_lm):
    s = make_sampler("temperature", n=3, temperature=1.0)
    a = generate(tiny_lm, s, PROMPTS, ["a", "b", "c"], max_new_tokens=12, seed=5)
    b = generate(tiny_lm, s, PROMPTS, ["a", "b", "c"], max_new_tokens=12, seed=5)
    c = generate(tiny_lm, s, PROMPTS, ["a", "b", "c"], max_new_tokens=12, seed=6)
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)
    # the n samples of one prompt differ from each other
    assert len({tuple(t) for t in texts(a)[0]}) == 3


def test_batch_invariance(tiny_lm):
    """A prompt alone and inside a larger, differently padded batch gives identical samples."""
    s = make_sampler("temperature", n=4, temperature=1.0)
    together = generate(tiny_lm, s, PROMPTS, ["a", "b", "c"], max_new_tokens=16, seed=1)
    for i, pid in enumerate(["a", "b", "c"]):
        alone = generate(tiny_lm, s, [PROMPTS[i]], [pid], max_new_tokens=16, seed=1)
        assert texts(alone)[0] == texts(together)[i], f"prompt {pid} changed with its batch neighbours"
    # and order in the batch does not matter either
    rev = generate(tiny_lm, s, PROMPTS[::-1], ["c", "b", "a"], max_new_tokens=16, seed=1)
    assert texts(rev)[::-1] == texts(together)


def test_sample_depends_on_problem_id_not_position(tiny_lm):
    s = make_sampler("temperature", n=2, temperature=1.0)
    a = generate(tiny_lm, s, [PROMPTS[0]], ["x"], max_new_tokens=10, seed=0)
    b = generate(tiny_lm, s, [PROMPTS[0]], ["y"], max_new_tokens=10, seed=0)
    assert texts(a) != texts(b)


def test_row_uniforms_are_per_row():
    u1 = row_uniforms(0, ["p", "q"], 2, 5)
    u2 = row_uniforms(0, ["q"], 2, 5)
    assert torch.equal(u1[2:], u2)
    assert not torch.equal(u1[0], u1[1])
    assert ((u1 >= 0) & (u1 < 1)).all()


def test_left_padding_matches_unpadded_greedy(tiny_lm):
    """Greedy continuation of a short prompt is the same alone and left-padded next to a long prompt,
    and equals HF generate's greedy output."""
    g = make_sampler("temperature", n=1, temperature=0.0)
    alone = generate(tiny_lm, g, [PROMPTS[1]], ["b"], max_new_tokens=10).prompts[0][0]
    padded = generate(tiny_lm, g, PROMPTS, ["a", "b", "c"], max_new_tokens=10).prompts[1][0]
    assert alone.token_ids == padded.token_ids
    ids = torch.tensor([tiny_lm.encode(PROMPTS[1])])
    hf = tiny_lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                                min_new_tokens=10, pad_token_id=tiny_lm.tokenizer.pad_token_id)
    assert hf[0, ids.shape[1]:].tolist()[: len(alone.token_ids)] == alone.token_ids


def test_eos_stops_a_row_and_max_new_tokens_caps(tiny_lm):
    eos = tiny_lm.eos_token_ids[0]

    class EosAfter3(TruncationSampler):
        def choose(self, view):
            c = super().choose(view)
            # rows with even sample index stop after 3 tokens
            stop = (view.rows % 2 == 0) & (view.row_steps == 2)
            c.tokens = torch.where(stop, torch.tensor(eos), torch.where(c.tokens == eos, 0, c.tokens))
            return c

    out = generate(tiny_lm, make_sampler("temperature", as_class=EosAfter3, n=4, temperature=1.0), PROMPTS[:2],
                   ["a", "b"], max_new_tokens=9)
    for rows in out.prompts:
        for r in rows:
            if r.sample_index % 2 == 0:
                assert r.finish_reason == "eos" and r.num_tokens == 3 and r.token_ids[-1] == eos
            else:
                assert r.finish_reason == "length" and r.num_tokens == 9
    # rows never move: a finished row waits, masked inactive, until its prompt's last row ends; once more
    # than a tenth of the rows are finished, a step forwards only the active rows (CPU), so the decode steps
    # computed exactly the tokens after each row's first (which comes from the prefill)
    assert out.stats.row_steps == sum(r.num_tokens - 1 for rows in out.prompts for r in rows) < out.stats.steps * 8


def test_row_steps_are_each_rows_own_under_continuous_batching(tiny_lm):
    """Every row writes token 100 + its `row_steps` entry and ends (EOS) at a step its problem sets. Prompts
    enter slots while the other slot is mid-generation, so a step shared by all rows (the old `StepView.step`,
    slot 0's) would give the rows of slot 1 the wrong tokens and ends."""
    eos, ends = tiny_lm.eos_token_ids[0], {"a": 1, "b": 5, "c": 2, "d": 3}

    class Counting(TruncationSampler):
        def begin(self, info):
            super().begin(info)
            self.slot_end = [0] * info.num_prompts

        def admit(self, slot, problem_id, prompt_ids=None):
            self.slot_end[slot] = ends[problem_id]

        def choose(self, view):
            end = torch.tensor(self.slot_end)[view.rows // self.n]
            return Choice(torch.where(view.row_steps == end, eos, 100 + view.row_steps))

    out = generate(tiny_lm, make_sampler("temperature", as_class=Counting, n=2), ["w", "x", "y", "z"], list(ends),
                   max_new_tokens=8, batch_prompts=2)
    assert out.stats.admissions == 4 and out.stats.steps < 8
    for (pid, end), rows in zip(ends.items(), out.prompts):
        assert [r.token_ids for r in rows] == [[*range(100, 100 + end), eos]] * 2, pid
        assert {r.finish_reason for r in rows} == {Finish.EOS.value}


def test_ignore_eos_runs_to_length(tiny_lm):
    out = generate(tiny_lm, make_sampler("temperature", n=2), PROMPTS[:1], ["a"], max_new_tokens=7, ignore_eos=True)
    assert all(r.num_tokens == 7 for r in out.prompts[0])


def built(cls, **overrides):
    """A test subclass of a sampler, built from that sampler's yaml."""
    option = next(o for base, o in ((ESampSampler, "esamp"), (FireSampler, "fire"), (TruncationSampler, "temperature"))
                  if issubclass(cls, base))
    return make_sampler(option, as_class=cls, **overrides)


def _scripted(base_cls, forced: list[int]):
    """A sampler whose every row writes the token sequence `forced` (then repeats its last token)."""
    class Scripted(base_cls):
        def choose(self, view):
            c = super().choose(view)
            c.tokens = torch.tensor(forced)[view.row_steps.clamp(max=len(forced) - 1)]
            return c
    return Scripted


def test_stop_strings(tiny_lm):
    """Force a row to write 'STOP' and check it ends there with the stop string cut from the text."""
    Scripted = _scripted(TruncationSampler, tiny_lm.encode("abcSTOPxyz"))
    out = generate(tiny_lm, built(Scripted, n=1), ["x"], ["a"], max_new_tokens=10,
                   stop_strings=("STOP",))
    r = out.prompts[0][0]
    assert r.finish_reason == "stop" and r.text == "abc" and r.num_tokens == len(tiny_lm.encode("abcSTOP"))


def test_on_prompt_done_fires_once_per_prompt(tiny_lm):
    seen = []
    generate(tiny_lm, make_sampler("temperature", n=2), PROMPTS, ["a", "b", "c"], max_new_tokens=5,
             on_prompt_done=lambda p, rows: seen.append((p, len(rows))))
    assert sorted(seen) == [(0, 2), (1, 2), (2, 2)]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("kind", ["layer0_to_final", "input_norms"])
def test_taps_match_full_hidden_states(arch, kind):
    """The hooks capture exactly the activations the Distiller needs, for Llama and Qwen2 models."""
    lm = load_model(tiny_cfg(arch=arch, num_layers=3))
    ids = torch.tensor([lm.encode("some text to run")])
    taps = HiddenTaps(lm, kind)
    try:
        out = lm.decoder(input_ids=ids, output_hidden_states=True)
        src, tgt = taps.read(out.last_hidden_state[:, -1])
    finally:
        taps.remove()
    hs = out.hidden_states
    if kind == "layer0_to_final":
        assert torch.allclose(src, hs[1][:, -1])                           # after decoder layer 0
        assert torch.equal(tgt, out.last_hidden_state[:, -1])              # final normed state
        logits = lm.model(ids).logits[:, -1]
        assert torch.allclose(lm.lm_head(tgt), logits, atol=1e-5)           # it is the LM head's input
    else:
        emb = lm.decoder.embed_tokens(ids)
        assert torch.allclose(src, lm.layers[0].input_layernorm(emb)[:, -1], atol=1e-6)
        assert torch.allclose(tgt, lm.layers[-1].input_layernorm(hs[-2])[:, -1], atol=1e-6)
    # removed cleanly (transformers installs its own output-capturing hooks; ours must be gone)
    assert not any("HiddenTaps" in getattr(h, "__qualname__", "") for m in lm.model.modules()
                   for h in m._forward_hooks.values())


def _eos_on_own_tokens(base_cls):
    """A sampler that ends a row when its own sampled token id is divisible by 23: rows finish at different,
    data-dependent steps, and whether a row ends depends only on that row."""
    class EosOnOwnTokens(base_cls):
        def choose(self, view):
            c = super().choose(view)
            eos = view.lm.eos_token_ids[0]
            if not view.prefill:
                c.tokens = torch.where(c.tokens % 23 == 0, eos, c.tokens)
            return c
    return EosOnOwnTokens


# Every sampler whose semantics make a prompt's samples independent of its batch. Not here: ESamp's
# `state=shared` (one Distiller trained on the whole batch, by design); contrastive decoding and diverse beam
# search have their own batch-invariance tests (they need a second model / lock-step waves).
BATCH_INVARIANT = {
    "temperature": (TruncationSampler, {}),
    "esamp": (ESampSampler, {}),
    "esamp_noise": (ESampSampler, {"error": "noise"}),
    "esamp_naive": (ESampSampler, {"fusion": "subtract"}),
    "esamp_tllm": (ESampSampler, {"variant": "tllm", "min_p": 0.05}),
    "fire": (FireSampler, {"first_top_k": 8}),
}


@pytest.mark.parametrize("kind", list(BATCH_INVARIANT))
def test_continuous_batching_is_batch_invariant_with_eos(peaked_lm, kind):
    """A prompt's samples do not depend on which prompts shared its batch or when it entered a slot, with
    rows finishing at different steps (EOS on) and ESamp's per-prompt Distiller training on whatever rows are
    still active (the noise control draws from per-row streams)."""
    base, extra = BATCH_INVARIANT[kind]
    cls = _eos_on_own_tokens(base)
    s = built(cls, n=3, temperature=1.0, **extra)
    prompts = [f"prompt number {i} " * (i + 1) for i in range(5)]
    ids = [f"id{i}" for i in range(5)]
    two = generate(peaked_lm, s, prompts, ids, max_new_tokens=24, batch_prompts=2, seed=3)
    lengths = {r.num_tokens for rows in two.prompts for r in rows}
    assert len(lengths) > 3 and {r.finish_reason for rows in two.prompts for r in rows} == {"eos", "length"}
    assert two.stats.admissions == 5
    rev = generate(peaked_lm, s, prompts[::-1], ids[::-1], max_new_tokens=24, batch_prompts=3, seed=3)
    assert texts(rev)[::-1] == texts(two)
    for i in (0, 4):  # the first prompt (entered at once) and the last (entered mid-run) alone
        alone = generate(peaked_lm, s, [prompts[i]], [ids[i]], max_new_tokens=24, seed=3)
        assert texts(alone)[0] == texts(two)[i]


@pytest.mark.parametrize("kind", ["temperature", "esamp", "esamp_tllm", "esamp_shared"])
def test_forwarding_only_active_rows_changes_no_token(peaked_lm, monkeypatch, kind):
    """Leaving finished rows out of a decode step's forward (CPU) gives the same tokens as forwarding every
    row: the active rows' K/V gathered from the row cache, hidden states (and the Distiller's taps) put back
    at their row indices. Rows finish at different steps (EOS on); ESamp trains on the active rows."""
    import esamp.generation as generation

    base = TruncationSampler if kind == "temperature" else ESampSampler
    cls = _eos_on_own_tokens(base)
    extra = {"esamp_tllm": {"variant": "tllm"}, "esamp_shared": {"state": "shared"}}.get(kind, {})
    prompts = [f"prompt number {i} " * (i + 1) for i in range(5)]
    ids = [f"id{i}" for i in range(5)]
    runs = {}
    for below in (0.0, generation.FORWARD_ACTIVE_BELOW):  # 0.0: every step forwards every row
        monkeypatch.setattr(generation, "FORWARD_ACTIVE_BELOW", below)
        runs[below] = generate(peaked_lm, built(cls, n=4, temperature=1.0, **extra), prompts, ids, max_new_tokens=24,
                               batch_prompts=2, seed=3)
    full, subset = runs[0.0], runs[generation.FORWARD_ACTIVE_BELOW]
    assert len({r.num_tokens for rows in full.prompts for r in rows}) > 3
    assert texts(subset) == texts(full)
    assert subset.stats.steps == full.stats.steps and subset.stats.row_steps < 0.9 * full.stats.row_steps


def test_a_free_slot_takes_the_next_prompt_at_once(peaked_lm):
    """Continuous batching: decode steps = what the slots' prompts need, not the sum of lock-step waves."""
    cls = _eos_on_own_tokens(TruncationSampler)
    prompts, ids = [f"p {i}" for i in range(6)], [f"x{i}" for i in range(6)]
    cont = generate(peaked_lm, built(cls, n=2), prompts, ids, max_new_tokens=30, batch_prompts=2)

    class LockStep(cls):
        continuous = False
    waves = generate(peaked_lm, built(LockStep, n=2), prompts, ids, max_new_tokens=30, batch_prompts=2)
    assert texts(cont) == texts(waves)  # same samples either way
    assert cont.stats.steps < waves.stats.steps
    longest = [max(r.num_tokens for r in rows) for rows in cont.prompts]
    wave_steps = sum(max(longest[i:i + 2]) for i in range(0, 6, 2))
    assert waves.stats.steps <= wave_steps and cont.stats.steps <= sum(longest)


@pytest.mark.parametrize("sync_every", [1, 8])
def test_no_token_after_a_stop_string_is_trained_or_counted(tiny_lm, sync_every):
    """Whatever the host sync interval, a row ends at the token completing its stop string: ESamp never
    trains on the tokens a lagging sync would have let it generate after the stop."""
    Scripted = _scripted(ESampSampler, tiny_lm.encode("abcSTOPxyzxyzxyzxyz"))
    out = generate(tiny_lm, built(Scripted, n=2), ["x"], ["a"], max_new_tokens=16,
                   stop_strings=("STOP",),
                   sync_every=sync_every)
    stop_len = len(tiny_lm.encode("abcSTOP"))
    assert all(r.finish_reason == "stop" and r.num_tokens == stop_len for r in out.prompts[0])
    # the first token comes from the prefill (no training); then one trained pair per later token
    assert out.telemetry["trained_rows"] == 2 * (stop_len - 1)


def test_row_cache_additive_mask_equals_boolean_mask(tiny_lm):
    """The row cache hands the model an additive 0/-inf mask (cheaper for SDPA than a boolean one): a decode
    step over rows of different lengths gives bit-identical hidden states with the equivalent boolean mask,
    and the mask reads exactly columns 0..length[r] of each row."""
    from esamp.kvcache import RowCache

    rows = [tiny_lm.encode(p) for p in PROMPTS]
    hidden = {}
    for kind in ("additive", "boolean"):
        cache = RowCache(tiny_lm.model, rows=len(rows), width=256, device="cpu", dtype=torch.float32)
        for r, ids in enumerate(rows):
            pre = tiny_lm.decoder(input_ids=torch.tensor([ids]), use_cache=True)
            cache.load(torch.tensor([r]), pre.cache, len(ids))
        lengths = cache.length.clone()
        mask = cache.begin_step(int(lengths.max()) + 1)
        assert mask.dtype == torch.float32 and mask.shape == (len(rows), 1, 1, int(lengths.max()) + 1)
        for r, n in enumerate(lengths.tolist()):
            assert (mask[r, 0, 0, : n + 1] == 0).all() and torch.isneginf(mask[r, 0, 0, n + 1:]).all()
        if kind == "boolean":
            mask = mask == 0
        with torch.no_grad():
            out = tiny_lm.decoder(input_ids=torch.tensor([[ids[-1]] for ids in rows]), attention_mask=mask,
                                  position_ids=cache.length[:, None], cache=cache, use_cache=True)
        cache.end_step()
        hidden[kind] = out.last_hidden_state
    assert torch.equal(hidden["additive"], hidden["boolean"])
