"""Paired Pass@k comparison (esamp.analysis.compare, esamp.cli.compare) on hand-made run folders whose numbers
are worked out by hand here, and the problem-id lists of experiments (esamp.cli.select_problems and
`task.subset={ids_file: ...}` in esamp.tasks.data). The command lines run in-process through main(argv); one
test runs `python -m esamp.cli.compare` as a real process, and the scripts/ forwards are run in-process."""
from __future__ import annotations

import csv
import gzip
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from esamp.analysis.compare import compare_runs, plot_dynamics
from esamp.analysis.runs import load_samples
from esamp.analysis.stats import bootstrap_weights
from esamp.cli import compare as compare_cli
from esamp.cli import select_problems
from esamp.tasks.data import DataNotFound, select_rows

from conftest import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"
PNG = b"\x89PNG\r\n\x1a\n"
T, F = True, False


def write_run(path: Path, pattern: dict[str, list[bool]], levels: dict[str, int] | None = None,
              answers: dict[str, list] | None = None, telemetry: dict | None = None, gz: bool = False) -> Path:
    """A run folder: one sample per entry of pattern[problem] (its correctness), results.json."""
    path.mkdir(parents=True)
    lines = []
    for pid, oks in pattern.items():
        for i, ok in enumerate(oks):
            ans = (answers or {}).get(pid, [None] * len(oks))[i]
            lines.append(json.dumps({"problem_id": pid, "sample_index": i, "correct": ok, "tokens": 10,
                                     "extracted": ans if answers else ("42" if ok else f"wrong{i}"),
                                     "finish_reason": "eos",
                                     "problem_meta": {"level": (levels or {}).get(pid)}}) + "\n")
    if gz:
        with gzip.open(path / "samples.jsonl.gz", "wt") as f:
            f.writelines(lines)
    else:
        (path / "samples.jsonl").write_text("".join(lines))
    n = len(next(iter(pattern.values())))
    (path / "results.json").write_text(json.dumps({"task": "math500", "sampler": {"name": path.name, "n": n},
                                                   "sampler_telemetry": telemetry or {}}))
    return path


def rows_at(res, level="all"):
    return {r["k"]: r for r in res["rows"] if r["level"] == level}


def test_identical_arms_have_zero_difference(tmp_path):
    pattern = {"a": [T, F, F, F], "b": [T, T, F, T], "c": [F, F, F, F]}
    base = write_run(tmp_path / "base", pattern)
    arm = write_run(tmp_path / "same", pattern)
    res = compare_runs([arm], base, ks=[1, 2, 4], resamples=2000)
    for k, r in rows_at(res).items():
        assert r["diff"] == 0.0 and r["diff_lo"] == 0.0 and r["diff_hi"] == 0.0, k
        assert r["arm_pass"] == r["baseline_pass"] > 0
        assert (r["arm_only"], r["baseline_only"], r["both"], r["neither"]) == (0, 0, 2, 1)
    assert rows_at(res)[1]["arm_pass"] == pytest.approx((1 / 4 + 3 / 4 + 0) / 3)


def test_dominating_arm_interval_strictly_above_zero(tmp_path):
    # n = 4; the arm has c = 1, 2, 4 correct, the baseline none: per-problem Pass@2 = 1 - C(4-c,2)/C(4,2)
    base = write_run(tmp_path / "base", {"a": [F] * 4, "b": [F] * 4, "c": [F] * 4})
    arm = write_run(tmp_path / "arm", {"a": [T, F, F, F], "b": [T, T, F, F], "c": [T] * 4})
    res = compare_runs([arm], base, ks=[1, 2, 4], resamples=10_000)
    rows = rows_at(res)
    assert rows[1]["diff"] == pytest.approx((1 / 4 + 2 / 4 + 1) / 3)
    assert rows[2]["diff"] == pytest.approx(((1 - 3 / 6) + (1 - 1 / 6) + 1) / 3)
    assert rows[4]["diff"] == pytest.approx(1.0)
    for k, r in rows.items():
        assert r["diff_lo"] > 0 and r["diff_lo"] <= r["diff"] <= r["diff_hi"] <= 1, k
        assert r["baseline_pass"] == 0 and (r["arm_only"], r["baseline_only"], r["both"]) == (3, 0, 0)
    assert rows[4]["diff_lo"] == rows[4]["diff_hi"] == 1.0  # every problem differs by exactly 1


def test_mixed_outcomes_counts_and_interval_across_zero(tmp_path):
    # n = 2. Per problem: arm-only solve, baseline-only solve, both, neither.
    base = write_run(tmp_path / "base", {"p0": [F, F], "p1": [T, F], "p2": [T, F], "p3": [F, F]})
    arm = write_run(tmp_path / "arm", {"p0": [T, F], "p1": [F, F], "p2": [T, T], "p3": [F, F]})
    rows = rows_at(compare_runs([arm], base, ks=[1, 2], resamples=5000))
    assert (rows[1]["arm_only"], rows[1]["baseline_only"], rows[1]["both"], rows[1]["neither"]) == (1, 1, 1, 1)
    assert rows[1]["arm_pass"] == pytest.approx(0.375) and rows[1]["baseline_pass"] == pytest.approx(0.25)
    assert rows[1]["diff"] == pytest.approx(0.125)
    assert rows[2]["diff"] == pytest.approx(0.0)  # 1, 0, 1, 0 against 0, 1, 1, 0
    for r in rows.values():  # per-problem differences of both signs: the interval straddles 0
        assert r["diff_lo"] < 0 < r["diff_hi"]


def test_vectorised_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(37, 3))
    fast = bootstrap_weights(37, 500, seed=7) @ d
    idx = np.random.default_rng(7).integers(0, 37, size=(500, 37))  # the same stream, resample by resample
    slow = np.stack([d[i].mean(0) for i in idx])
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    assert np.allclose(bootstrap_weights(37, 500, seed=7).sum(1), 1.0)


def test_mismatched_n_is_refused(tmp_path, capsys):
    base = write_run(tmp_path / "base", {"a": [T, F]})
    arm = write_run(tmp_path / "arm", {"a": [T, F, F, F]})
    with pytest.raises(ValueError, match="n=4.*n=2"):
        compare_runs([arm], base)
    assert compare_cli.main([str(arm), "--baseline", str(base)]) == 2
    assert "do not pair" in capsys.readouterr().err


def test_only_common_problems_are_compared(tmp_path):
    base = write_run(tmp_path / "base", {"a": [T, F], "b": [F, F], "only_base": [T, T]})
    arm = write_run(tmp_path / "arm", {"a": [T, F], "b": [T, F], "only_arm": [F, F]})
    res = compare_runs([arm], base, ks=[1, 2, 4, 8])
    assert res["ks"] == [1, 2] and any("k > n=2" in note for note in res["notes"])
    assert any("2 problems in common; dropped 1 only in arm, 1 only in base" in note for note in res["notes"])
    r = rows_at(res)[1]
    assert r["problems"] == 2 and r["baseline_pass"] == pytest.approx(0.25) and r["arm_pass"] == pytest.approx(0.5)


def test_per_level_breakdown(tmp_path):
    levels = {"a": 1, "b": 1, "c": 2}
    base = write_run(tmp_path / "base", {"a": [F, F], "b": [T, F], "c": [T, T]}, levels)
    arm = write_run(tmp_path / "arm", {"a": [T, T], "b": [T, F], "c": [F, F]}, levels)
    res = compare_runs([arm], base, ks=[1, 2], resamples=1000)
    assert [r["level"] for r in res["rows"]] == ["all", "all", 1, 1, 2, 2]
    l1, l2 = rows_at(res, 1), rows_at(res, 2)
    assert l1[1]["problems"] == 2 and l2[1]["problems"] == 1
    assert l1[1]["diff"] == pytest.approx((1 + 0) / 2) and l1[1]["diff_lo"] == pytest.approx(0.0)
    assert l2[2]["diff"] == l2[2]["diff_lo"] == l2[2]["diff_hi"] == -1.0  # one problem: no spread
    assert (l1[1]["arm_only"], l1[1]["both"], l2[1]["baseline_only"]) == (1, 1, 1)


def test_answer_diversity(tmp_path):
    answers = {"a": [" 42", "42", "41 ", None], "b": [None, None, "7", "8"]}
    base = write_run(tmp_path / "base", {"a": [T, T, F, F], "b": [F, F, F, F]}, answers=answers)
    arm = write_run(tmp_path / "arm", {"a": [F, F, F, F], "b": [F, F, F, F]}, answers={"a": ["1"] * 4, "b": ["1"] * 4})
    div = compare_runs([arm], base, ks=[1])["diversity"]
    assert div["base"]["distinct_answers"] == pytest.approx(2.0)  # {"42", "41"} and {"7", "8"}
    assert div["base"]["no_answer"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert div["base"]["correct_among"] == pytest.approx(0.5)
    assert div["arm"]["distinct_answers"] == 1.0 and div["arm"]["correct_among"] == 0.0


def test_gzip_samples_and_torn_last_line(tmp_path):
    run = write_run(tmp_path / "gz", {"a": [T, F], "b": [F, F]}, gz=True)
    assert len(load_samples(run)) == 4
    torn = write_run(tmp_path / "torn", {"a": [T, F], "b": [F, F]})
    with open(torn / "samples.jsonl", "a") as f:
        f.write('{"problem_id": "c", "sample_in')  # a run killed mid-write
    assert {r["problem_id"] for r in load_samples(torn)} == {"a", "b"}
    assert rows_at(compare_runs([torn], run, ks=[1]))[1]["diff"] == 0.0


def test_command_line_end_to_end(tmp_path):
    """The one real process: `python -m esamp.cli.compare` from the checkout (its own esamp, whatever is
    installed), writing every file."""
    levels = {"a": 1, "b": 2}
    tele = {"loss_curve": [3.0, 2.0, None, 1.0], "error_norm_curve": [5.0, 4.0, 3.5, 3.0]}
    base = write_run(tmp_path / "runs" / "temperature", {"a": [F] * 4, "b": [T, F, F, F]}, levels)
    write_run(tmp_path / "runs" / "esamp", {"a": [T, F, F, F], "b": [T, T, F, F]}, levels, telemetry=tele)
    write_run(tmp_path / "runs" / "min_p", {"a": [F] * 4, "b": [T, F, F, F]}, levels)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "esamp.cli.compare", str(tmp_path / "runs" / "esamp"),
                          str(tmp_path / "runs" / "min_p"), "--baseline", str(base), "--out", str(out),
                          "--resamples", "10000"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| esamp | 4 | 2 | 1.000 | 0.500 | +0.500 | [+0.000, +1.000] | no |" in res.stdout
    assert "| min_p | 1 | 2 | 0.125 | 0.125 | +0.000 | [+0.000, +0.000] | no |" in res.stdout
    with open(out / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 3  # arms x (all, level 1, level 2) x k in {1, 2, 4}
    assert {r["arm"] for r in rows} == {"esamp", "min_p"} and {r["baseline"] for r in rows} == {"temperature"}
    for name in ("passk_curves.png", "passk_difference.png", "distiller_dynamics.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert (out / "comparison.md").read_text().startswith("# Paired comparison against `temperature`")
    with open(out / "answers.csv") as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["temperature", "esamp", "min_p"]


def test_dynamics_plot(tmp_path, capsys):
    plain = write_run(tmp_path / "plain", {"a": [T]})
    assert plot_dynamics([plain], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    esamp = write_run(tmp_path / "esamp", {"a": [T]}, telemetry={"loss_curve": [2.0, 1.0], "error_norm_curve": [3.0]})
    fig = plot_dynamics([plain, esamp], tmp_path / "dyn.png")
    assert len(fig.axes) == 2 and (tmp_path / "dyn.png").read_bytes()[:8] == PNG
    assert compare_cli.main([str(plain), "--dynamics-only", "--out", str(tmp_path)]) == 2
    assert "no run reports" in capsys.readouterr().err
    assert compare_cli.main([str(plain), str(esamp), "--dynamics-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "distiller_dynamics.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("name", ["compare", "frontier", "aggregate", "select_problems"])
def test_scripts_forward_to_the_command_line(name, monkeypatch, capsys):
    """scripts/<name>.py (the path committed READMEs call) runs esamp.cli.<name> as __main__."""
    monkeypatch.setattr(sys, "argv", [f"scripts/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "scripts" / f"{name}.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {name}.py")


def test_k_axis_labels_thin_out_when_crowded():
    """k = 1..16 on a log2 axis ran together as "1011121314"; past 8 ticks only powers of two and the largest k
    are labelled, and every k keeps its tick."""
    from esamp.analysis.plotting import k_axis, pyplot, tick_labels
    assert tick_labels([1, 2, 4, 8, 16]) == ["1", "2", "4", "8", "16"]
    assert tick_labels([1, 3, 5, 6, 7, 9, 10, 11, 12]) == ["1", "", "", "", "", "", "", "", "12"]
    ks = list(range(1, 17))
    fig, ax = pyplot().subplots()
    k_axis(ax, ks)
    assert list(ax.get_xticks()) == ks
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) if k in (1, 2, 4, 8, 16) else "" for k in ks]
    pyplot().close(fig)


# ------------------------------------------------------------------------- problem-id lists for experiments
def test_ids_file_subset(tmp_path):
    rows = [{"unique_id": f"p{i}", "level": i % 3} for i in range(10)]
    f = tmp_path / "ids.json"
    f.write_text(json.dumps({"id_field": "unique_id", "ids": ["p7", "p2", "p4"]}))
    assert [r["unique_id"] for r in select_rows(rows, {"ids_file": str(f)}, None)] == ["p2", "p4", "p7"]
    assert [r["unique_id"] for r in select_rows(rows, {"ids_file": str(f), "level": [1]}, None)] == ["p4", "p7"]
    assert [r["unique_id"] for r in select_rows(rows, {"ids_file": str(f)}, 1)] == ["p2"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(["p1", "p3"]))
    assert [r["unique_id"] for r in select_rows(rows, {"ids_file": str(bare)}, None)] == ["p1", "p3"]
    f.write_text(json.dumps({"ids": ["p1", "missing"]}))
    with pytest.raises(ValueError, match="1 of 2 ids"):
        select_rows(rows, {"ids_file": str(f)}, None)
    with pytest.raises(DataNotFound, match="does not exist"):
        select_rows(rows, {"ids_file": str(tmp_path / "nope.json")}, None)


def test_select_problems_command_line_and_subset(tmp_path, capsys):
    """The written file, passed as the documented override, selects exactly its problems."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    out = tmp_path / "exp" / "problems.json"
    args = ["--task", "math500", "--per-level", "1", "--seed", "3", "--data", str(FIXTURE), "--out", str(out)]
    assert select_problems.main(args) == 0
    spec = json.loads(out.read_text())
    assert len(spec["ids"]) == 2 and spec["counts"] == {"1": 1, "2": 1} and spec["data_sha256"]
    assert "test/algebra/0002.json" in spec["ids"]  # the only level-2 problem
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=math500", f"task.data_path={FIXTURE}",
                                           f"task.subset={{ids_file:{out}}}"])
    in_file_order = [json.loads(line)["unique_id"] for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert [p.id for p in instantiate(cfg.task).load()] == [i for i in in_file_order if i in spec["ids"]]
    assert select_problems.main(args[:2] + ["--per-level", "2"] + args[4:]) == 2
    assert "fewer than --per-level 2" in capsys.readouterr().err


def test_committed_problem_list():
    spec = json.loads((ROOT / "experiments" / "math500_qwen05" / "problems.json").read_text())
    assert len(spec["ids"]) == len(set(spec["ids"])) == 100 and spec["counts"] == {str(lv): 20 for lv in range(1, 6)}
    assert spec["seed"] == 0 and spec["id_field"] == "unique_id"
    data = shared_data_dir()
    if data is None or not (data / "math500.jsonl").exists():
        pytest.skip("no ../shared/data/math500.jsonl to redraw from")
    from esamp.tasks.data import read_jsonl

    rows = read_jsonl(data / "math500.jsonl")
    assert select_problems.select(rows, 20, 0)["ids"] == spec["ids"]  # the same file and seed draw the same list
    level = {r["unique_id"]: r["level"] for r in rows}
    assert sorted(level[i] for i in spec["ids"]) == [lv for lv in range(1, 6) for _ in range(20)]
