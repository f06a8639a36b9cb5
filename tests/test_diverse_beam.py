"""Diverse (group) beam search inside the shared decoding loop (`sampler=diverse_beam`).

- num_groups = 1 is ordinary beam search: same hypotheses and scores as transformers' own beam search.
- A brute-force reference (full forwards, no cache) for groups of one beam with a Hamming penalty.
- The penalty makes groups differ; batching / sync points / compaction do not change results.
- End to end through run.py.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from esamp.generation import generate
from esamp.models import load_model
from esamp.samplers.diverse_beam import DiverseBeamSampler
from tests.conftest import make_sampler

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"
PROMPTS = ["Hello there", "A much longer prompt about 2+2"]  # different lengths: left padding


@pytest.fixture(scope="module")
def lm():
    return load_model(OmegaConf.create(dict(source="tiny_random", dtype="float32", seed=0, init_scale=3.0)))


@pytest.fixture(scope="module")
def lm_eos(lm):
    """The same model with EOS made as likely as its favourite tokens, so hypotheses end early."""
    boosted = copy.deepcopy(lm)
    with torch.no_grad():
        w = boosted.lm_head.weight  # tied with the input embedding: harmless for these tests
        w[boosted.eos_token_ids[0]] = (w[117] + w[137] + w[165]) / 3 * 1.3
    return boosted


def _beam(**kw) -> DiverseBeamSampler:
    args = dict(num_beams=4, num_groups=1, diversity_penalty=0.0, length_penalty=1.0, early_stopping=True)
    args.update(kw)
    return make_sampler("diverse_beam", **args)


def _left_pad(seqs, pad_id):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):], mask[i, width - len(s):] = torch.tensor(s), 1
    return ids, mask


def _hf_beam(lm, prompts, k, max_new_tokens, length_penalty, early_stopping):
    """transformers' own beam search: hypotheses, scores, and how many forward passes (= decode steps) it ran."""
    ids, mask = _left_pad([lm.encode(p) for p in prompts], lm.tokenizer.pad_token_id)
    calls = [0]
    hook = lm.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        out = lm.model.generate(input_ids=ids, attention_mask=mask, num_beams=k, num_return_sequences=k,
                                do_sample=False, max_new_tokens=max_new_tokens, length_penalty=length_penalty,
                                early_stopping=early_stopping, output_scores=True, return_dict_in_generate=True)
    finally:
        hook.remove()
    seqs = out.sequences[:, ids.shape[1]:].reshape(len(prompts), k, -1).tolist()
    return seqs, out.sequences_scores.reshape(len(prompts), k).tolist(), calls[0]


# ------------------------------------------------------------------------------ num_groups = 1 vs HF
@pytest.mark.parametrize("num_prompts,k,length_penalty,early_stopping,max_new_tokens", [
    (2, 4, 1.0, True, 12), (2, 4, 1.0, False, 12), (2, 3, 2.0, False, 7), (2, 4, 0.0, True, 10),
    (2, 4, -1.0, "never", 8), (2, 4, 2.0, "never", 9),
    # single prompts that stop before max_new_tokens: by early_stopping=True, HF's heuristic, and "never"
    (1, 4, 1.0, True, 12), (1, 4, 0.5, False, 16), (1, 4, -1.0, "never", 8)])
def test_one_group_matches_hf_beam_search(lm_eos, num_prompts, k, length_penalty, early_stopping, max_new_tokens):
    lm, prompts = lm_eos, PROMPTS[:num_prompts]
    out = generate(lm, _beam(num_beams=k, length_penalty=length_penalty, early_stopping=early_stopping),
                   prompts, ["a", "b"][:num_prompts], max_new_tokens=max_new_tokens)
    hf_seqs, hf_scores, hf_steps = _hf_beam(lm, prompts, k, max_new_tokens, length_penalty, early_stopping)
    assert out.stats.steps + 1 == hf_steps  # the same stopping decisions (HF also counts the prefill forward)
    if num_prompts == 1:
        assert hf_steps < max_new_tokens
    pad = lm.tokenizer.pad_token_id
    for p in range(num_prompts):
        rows = out.prompts[p]
        assert [r.sample_index for r in rows] == list(range(k))
        for r, hs, hsc in zip(rows, hf_seqs[p], hf_scores[p]):
            # HF pads shorter hypotheses (after their EOS) with the pad token
            assert r.token_ids == hs[:len(r.token_ids)] and set(hs[len(r.token_ids):]) <= {pad}, (p, r.token_ids, hs)
            assert r.meta["beam_score"] == pytest.approx(hsc, abs=1e-4, rel=1e-5)
            assert r.text == lm.tokenizer.decode(r.token_ids, skip_special_tokens=True)
            ends_eos = r.token_ids[-1] in lm.eos_token_ids
            assert r.finish_reason == ("eos" if ends_eos else "length")
            # the stored score is the length-penalised log-prob sum (no diversity penalty with one group)
            assert r.meta["beam_score"] == pytest.approx(r.meta["beam_logprob"] / len(r.token_ids) ** length_penalty,
                                                         abs=1e-4)
        scores = [r.meta["beam_score"] for r in rows]
        assert scores == sorted(scores, reverse=True)


def test_hf_comparison_exercises_eos_and_early_stopping(lm_eos):
    """The cases above really contain EOS hypotheses, and early_stopping=True stops a prompt early."""
    lm = lm_eos
    out = generate(lm, _beam(early_stopping=True), PROMPTS[:1], ["a"], max_new_tokens=12)
    rows = out.prompts[0]
    assert {r.finish_reason for r in rows} == {"eos"}
    assert out.stats.steps < 12  # the sampler finished the prompt before max_new_tokens
    hf_seqs, _, _ = _hf_beam(lm, PROMPTS[:1], 4, 12, 1.0, True)
    assert len(hf_seqs[0][0]) == max(r.num_tokens for r in rows)  # HF stopped at the same step
    late = generate(lm, _beam(early_stopping=False), PROMPTS[:1], ["a"], max_new_tokens=12).prompts[0]
    assert [r.token_ids for r in late] != [r.token_ids for r in rows]


def test_single_prompt_matches_hf_without_eos(lm):
    out = generate(lm, _beam(num_beams=5, early_stopping=False), PROMPTS[1:], ["b"], max_new_tokens=6)
    hf_seqs, hf_scores, _ = _hf_beam(lm, PROMPTS[1:], 5, 6, 1.0, False)
    assert [r.token_ids for r in out.prompts[0]] == hf_seqs[0]
    assert [r.meta["beam_score"] for r in out.prompts[0]] == pytest.approx(hf_scores[0], abs=1e-4)
    assert len({tuple(s) for s in hf_seqs[0]}) == 5  # beams are distinguishable


# ------------------------------------------------------------------------------ diverse: brute force
def _brute_diverse(lm, prompt: str, groups: int, penalty: float, steps: int, length_penalty: float = 1.0):
    """Groups of one beam: group g's token at each step is argmax of logprob - penalty * (times groups < g
    chose that token at this step), continuing its own sequence. Full forwards, no cache."""
    prefix = lm.encode(prompt)
    seqs, sums = [[] for _ in range(groups)], [0.0] * groups
    with torch.no_grad():
        for _ in range(steps):
            counts: dict[int, int] = {}
            for g in range(groups):
                logits = lm.model(input_ids=torch.tensor([prefix + seqs[g]])).logits[0, -1].float()
                adj = torch.log_softmax(logits, -1)
                for tok, c in counts.items():
                    adj[tok] -= penalty * c
                tok = int(adj.argmax())
                assert tok not in lm.eos_token_ids  # precondition of this simple reference
                sums[g] += float(adj[tok])
                seqs[g].append(tok)
                counts[tok] = counts.get(tok, 0) + 1
    return seqs, [s / steps ** length_penalty for s in sums]


@pytest.mark.parametrize("groups,penalty,steps", [(2, 0.5, 3), (3, 0.3, 4), (3, 5.0, 3)])
def test_groups_of_one_beam_match_brute_force(lm, groups, penalty, steps):
    prompt = PROMPTS[0]
    ref_seqs, ref_scores = _brute_diverse(lm, prompt, groups, penalty, steps)
    plain, _ = _brute_diverse(lm, prompt, groups, 0.0, steps)
    assert ref_seqs != plain  # the penalty changes at least one decision: the comparison means something
    sampler = make_sampler("diverse_beam", num_beams=groups, num_groups=groups, diversity_penalty=penalty,
                                 length_penalty=1.0, early_stopping=True)
    rows = generate(lm, sampler, [prompt], ["p"], max_new_tokens=steps).prompts[0]
    by_group = {r.meta["beam_group"]: r for r in rows}
    assert sorted(by_group) == list(range(groups))
    for g in range(groups):
        assert by_group[g].token_ids == ref_seqs[g], g
        assert by_group[g].meta["beam_score"] == pytest.approx(ref_scores[g], abs=1e-4)


def test_penalty_increases_distinct_sequences(lm):
    def run(penalty):
        s = make_sampler("diverse_beam", num_beams=8, num_groups=4, diversity_penalty=penalty, early_stopping=True)
        return generate(lm, s, PROMPTS, ["a", "b"], max_new_tokens=6).prompts

    same, diverse = run(0.0), run(1.0)
    for p in range(len(PROMPTS)):
        seq0 = [tuple(r.token_ids) for r in same[p]]
        seq1 = [tuple(r.token_ids) for r in diverse[p]]
        assert len(seq0) == len(seq1) == 8
        assert len(set(seq0)) == 2  # without a penalty the 4 groups repeat the same 2-beam search
        assert len(set(seq1)) > len(set(seq0))
        firsts0 = {s[0] for s in seq0}
        firsts1 = {s[0] for s in seq1}
        assert len(firsts1) > len(firsts0)  # groups start differently (Hamming penalty at step 0)
        # with the penalty, group scores include it: later groups score at most their raw log-prob
        for r in diverse[p]:
            raw = r.meta["beam_logprob"] / len(r.token_ids)
            assert r.meta["beam_score"] <= raw + 1e-5
            if r.meta["beam_group"] == 0:
                assert r.meta["beam_score"] == pytest.approx(raw, abs=1e-5)


def test_batching_and_sync_points_do_not_change_results(lm_eos):
    """Each prompt alone == both together; host sync every 3 steps (finished prompts linger in the
    batch before compaction, as on CUDA) == every step."""
    lm = lm_eos
    kw = dict(num_beams=6, num_groups=3, diversity_penalty=0.7, early_stopping=True)

    def key(rows):
        return [(r.token_ids, round(r.meta["beam_score"], 4), r.finish_reason) for r in rows]

    both = generate(lm, make_sampler("diverse_beam", **kw), PROMPTS, ["a", "b"], max_new_tokens=10)
    assert both.stats.compactions >= 1  # the first prompt finished early and was compacted out
    synced = generate(lm, make_sampler("diverse_beam", **kw), PROMPTS, ["a", "b"], max_new_tokens=10, sync_every=3)
    for p, prompt in enumerate(PROMPTS):
        alone = generate(lm, make_sampler("diverse_beam", **kw), [prompt], ["x"], max_new_tokens=10).prompts[0]
        assert key(both.prompts[p]) == key(alone)
        assert key(synced.prompts[p]) == key(alone)


def test_stop_strings_are_refused_up_front(lm):
    """Stop strings retire single rows, which would tear a prompt's beams apart: a clear error before any
    decoding, not garbage."""
    with pytest.raises(ValueError, match="stop strings"):
        generate(lm, _beam(), PROMPTS[:1], ["a"], max_new_tokens=8, stop_strings=("x",))


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw,key", [
    (dict(num_beams=8, num_groups=3), "sampler.num_groups"),
    (dict(num_groups=0), "sampler.num_groups"),
    (dict(num_beams=0), "sampler.num_beams"),
    (dict(diversity_penalty=-0.1), "sampler.diversity_penalty"),
    (dict(early_stopping="sometimes"), "sampler.early_stopping"),
    (dict(temperature=0.0), "sampler.temperature"),
    (dict(n=4), "sampler.n"),
])
def test_validation(kw, key):
    with pytest.raises(ValueError) as err:
        make_sampler("diverse_beam", **kw)
    msg = str(err.value)
    assert msg.startswith(key + "=") and "allowed values" in msg and "\n" not in msg


def test_n_is_num_beams_and_config():
    cfg = OmegaConf.load(ROOT / "conf" / "sampler" / "diverse_beam.yaml")
    assert cfg._target_ == "esamp.samplers.diverse_beam.DiverseBeamSampler"
    from hydra.utils import instantiate

    s = instantiate(cfg, _convert_="all")
    assert (s.n, s.num_beams, s.num_groups, s.name) == (8, 8, 4, "diverse_beam")
    assert s.handles_eos and make_sampler("diverse_beam", num_beams=8, n=8).n == 8


# ------------------------------------------------------------------------------ end to end
def test_end_to_end_run(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "run.py", "model=tiny-random", "sampler=diverse_beam", "task=math500", "task.limit=2",
         "task.max_new_tokens=8", f"task.data_path={FIXTURE}", f"hydra.run.dir={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["pass_at_k"]["k"] == [1, 2, 4, 8]
    assert res["sampler"]["name"] == "diverse_beam" and res["sampler"]["n"] == 8
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines() if x.strip()]
    per = {}
    for rec in lines:
        per.setdefault(rec["problem_id"], []).append(rec)
    assert len(per) == 2 and all(len(v) == 8 for v in per.values())
    for recs in per.values():
        assert sorted(r["sample_index"] for r in recs) == list(range(8))
        scores = [r["beam_score"] for r in sorted(recs, key=lambda r: r["sample_index"])]
        assert scores == sorted(scores, reverse=True)
        assert {r["beam_group"] for r in recs} == {0, 1, 2, 3}
        assert all(1 <= r["tokens"] <= 8 and r["finish_reason"] in ("eos", "length") for r in recs)
