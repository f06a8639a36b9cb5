"""The mechanism verdict (esamp.analysis.mechanism, esamp.cli.mechanism) on hand-made run folders: the
registered rule's three outcomes, a missing control, and the command line in-process."""
from __future__ import annotations

import json

import pytest

from esamp.analysis.mechanism import decide, mechanism_analysis
from esamp.cli import mechanism as mechanism_cli

from test_compare import PNG, write_run

T, F = True, False
PROBLEMS = [f"p{i}" for i in range(24)]


def runs(tmp_path, fast_solves: bool, rel_error: float):
    """Controls solve every other problem (one correct sample of 4); the fast arm solves every problem when
    `fast_solves`, else exactly what the controls solve."""
    half = {p: ([T, F, F, F] if i % 2 == 0 else [F, F, F, F]) for i, p in enumerate(PROBLEMS)}
    fast = {p: [T, F, F, F] for p in PROBLEMS} if fast_solves else half
    tele = {"rel_error_norm_curve": [rel_error] * 200}
    return ({"paper": write_run(tmp_path / "esamp_b025", half, telemetry={"rel_error_norm_curve": [0.97] * 200}),
             "fast": write_run(tmp_path / "esamp_fast_b025", fast, telemetry=tele)},
            {"T 1": write_run(tmp_path / "temperature_t1", half), "T 0.8": write_run(tmp_path / "temperature_t08", half),
             "frozen": write_run(tmp_path / "esamp_frozen_b025", half)})


def test_a_learned_signal_that_beats_both_controls_is_supported(tmp_path):
    arms, controls = runs(tmp_path, fast_solves=True, rel_error=0.5)
    res = mechanism_analysis(arms, controls, ks=(1, 2, 4), resamples=2000, learned_below=0.86)
    assert res["verdict"].startswith("supported at k=4"), res["verdict"]
    fast_t08 = [r for r in res["rows"] if r["arm"] == "fast" and r["control"] == "T 0.8" and r["k"] == 4][0]
    assert fast_t08["diff"] == pytest.approx(0.5) and fast_t08["diff_lo"] > 0
    assert {r["control"] for r in res["rows"]} == {"T 1", "T 0.8", "frozen"}
    assert res["distiller"]["fast"]["rel_error_first"] == pytest.approx(0.5)


def test_no_difference_is_not_supported_only_when_the_distiller_learned(tmp_path):
    arms, controls = runs(tmp_path, fast_solves=False, rel_error=0.5)
    learned = mechanism_analysis(arms, controls, ks=(1, 4), resamples=500, learned_below=0.86)
    assert learned["verdict"].startswith("not supported"), learned["verdict"]
    arms, controls = runs(tmp_path / "b", fast_solves=False, rel_error=0.95)
    flat = mechanism_analysis(arms, controls, ks=(1, 4), resamples=500, learned_below=0.86)
    assert flat["verdict"].startswith("inconclusive") and "did not demonstrably learn" in flat["verdict"]


def test_a_missing_control_makes_the_verdict_inconclusive_and_is_named(tmp_path):
    arms, controls = runs(tmp_path, fast_solves=True, rel_error=0.5)
    controls["frozen"] = tmp_path / "not_run_yet"
    res = mechanism_analysis(arms, controls, ks=(1, 4), resamples=500, learned_below=0.86)
    assert res["missing"] == ["frozen"] and res["verdict"].startswith("inconclusive: frozen not run")
    arms["fast"] = tmp_path / "fast_not_run_yet"  # only what is missing is named, not the controls that ran
    res = mechanism_analysis(arms, controls, ks=(1, 4), resamples=500, learned_below=0.86)
    assert res["verdict"].startswith("inconclusive: fast, frozen not run ("), res["verdict"]


def test_an_interval_below_zero_is_not_read_as_no_difference():
    row = lambda c, lo, hi: {"arm": "fast", "control": c, "k": 16, "diff": (lo + hi) / 2, "diff_lo": lo, "diff_hi": hi}
    verdict = decide([row("T 0.8", -0.2, -0.1), row("frozen", -0.05, 0.05)], {"fast": {"rel_error_first": 0.5}},
                     "fast", 0.86, [])
    assert verdict.startswith("inconclusive: the two controls disagree")


def test_cli_writes_the_report_and_rejects_a_malformed_pair(tmp_path, capsys):
    arms, controls = runs(tmp_path, fast_solves=True, rel_error=0.5)
    argv = [f"--arm={k}={v}" for k, v in arms.items()] + [f"--control={k}={v}" for k, v in controls.items()]
    out = tmp_path / "mech"
    assert mechanism_cli.main([*argv, "--ks", "1,4", "--resamples", "300", "--learned-below", "0.86",
                               "--out", str(out)]) == 0
    assert "**Verdict (fast arm, registered rule):** supported" in (out / "mechanism.md").read_text()
    assert (out / "mechanism.png").read_bytes()[:8] == PNG
    assert json.loads((out / "mechanism.json").read_text())["learned_below"] == 0.86
    assert mechanism_cli.main(["--arm", "fast", "--control", "x=y", "--out", str(out)]) == 2
    assert "expected NAME=RUN_DIR" in capsys.readouterr().err
