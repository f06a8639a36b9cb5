"""The notebooks in notebooks/ run top to bottom on the example runs committed under results/.

Each notebook is executed with nbclient (kernel `python3`, i.e. this interpreter) with
ESAMP_RESULTS_DIR=results/ and ESAMP_FIGURES_DIR=<tmp>; no cell may error and every figure the data allow
must be written as a non-empty PNG. When results/ holds no run of the kind a notebook needs the test FAILS
(it does not skip): the example runs are part of the repository.

For development, ESAMP_NOTEBOOK_TEST_RESULTS=<folder> points the test at another folder (a sweep, /tmp runs).
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = Path(os.environ.get("ESAMP_NOTEBOOK_TEST_RESULTS") or ROOT / "results").resolve()


def _runs() -> list[tuple[Path, dict]]:
    if not RESULTS.is_dir():
        return []
    out = []
    for path in sorted(RESULTS.rglob("results.json")):
        if ".submitit" in path.parts:  # as esamp.analysis.runs.find_results
            continue
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _expected_passk(runs) -> tuple[list[Path], list[str]]:
    """Runs with a Pass@k curve, and the figures the notebook must then write."""
    mine = [(p, r) for p, r in runs if (r.get("pass_at_k") or {}).get("k")]
    figures = ["passk.png"]
    telemetry = [r.get("sampler_telemetry") or {} for _, r in mine]
    if any(t.get("loss_curve") for t in telemetry):
        figures.append("distiller_loss.png")
    if any(t.get("error_norm_curve") for t in telemetry):
        figures.append("error_norm.png")
    return [p for p, _ in mine], figures


def _expected_diversity(runs) -> tuple[list[Path], list[str]]:
    """Creative-writing runs (with diversity metrics), and the figures the notebook must then write."""
    mine = [(p, r) for p, r in runs if _finite((r.get("task_metrics") or {}).get("vendi"))]
    metrics = [r["task_metrics"] for _, r in mine]
    figures = []
    if any(_finite(m.get("perplexity")) for m in metrics):
        figures.append("diversity_vs_coherence.png")
    if any(any(v is not None and _finite(v) for _, v in (m.get("divergence_curve") or [])) for m in metrics):
        figures.append("divergence.png")
    return [p for p, _ in mine], figures


CASES = {
    "passk_curves.ipynb": (_expected_passk, "run that reports Pass@k (e.g. task=math500)"),
    "diversity.ipynb": (_expected_diversity, "creative_writing run (task=creative_writing)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_committed_without_outputs(name):
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{name}: clear the outputs before committing (cells {dirty}); e.g. " \
                      f"jupyter nbconvert --clear-output --inplace notebooks/{name}"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(CASES))
def test_notebook_runs(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    expected, kind = CASES[name]
    runs, figures = expected(_runs())
    if not runs:
        pytest.fail(f"{RESULTS} holds no {kind}: {name} has nothing to show. Commit example runs under "
                    f"results/ (python run.py ... hydra.run.dir=results/<name>) before running this test.")

    figdir = tmp_path / "figures"
    monkeypatch.setenv("ESAMP_RESULTS_DIR", str(RESULTS))
    monkeypatch.setenv("ESAMP_FIGURES_DIR", str(figdir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # Which interpreter ran the notebook: must be this one (the venv's), not a system kernel.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL_PREFIX=' + sys.prefix)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError (with the traceback) when a cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{name}: cell errors: {[(e.ename, e.evalue) for e in errors]}"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"KERNEL_PREFIX={sys.prefix}" in text, f"{name} ran in another interpreter: {text[-300:]}"

    for fig in figures:
        path = figdir / fig
        assert path.is_file() and path.stat().st_size > 1000, f"{name}: figure {fig} was not written to {figdir}"
    shown = sum("image/png" in o.get("data", {}) for o in outputs)
    assert shown >= len(figures), f"{name}: {shown} figures shown inline, expected {len(figures)}"
    tables = sum("text/html" in o.get("data", {}) for o in outputs)
    assert tables >= 1, f"{name}: the table was not displayed"


def test_no_runs_is_a_clear_error(tmp_path):
    """An empty folder, or one with runs of the other kind, is an error naming the folder (the notebooks stop
    at their first data cell instead of drawing empty plots)."""
    from esamp.analysis import notebook as nbu

    with pytest.raises(nbu.NoRunsError, match="no results.json with Pass@k"):
        nbu.passk_runs(tmp_path)
    with pytest.raises(nbu.NoRunsError, match="no creative_writing"):
        nbu.diversity_runs(tmp_path)
    with pytest.raises(nbu.NoRunsError, match="does not exist"):
        nbu.passk_runs(tmp_path / "missing")
    run = tmp_path / "cw"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "task": "creative_writing", "sampler": {"name": "temperature", "n": 2, "temperature": 1.0},
        "model": {"name": "m"}, "pass_at_k": None, "accuracy": None,
        "task_metrics": {"vendi": 1.5, "pairwise_cosine": 0.4, "perplexity": 10.0,
                         "divergence_curve": [[64, 0.5], [128, 0.4]]}}))
    with pytest.raises(nbu.NoRunsError, match="no results.json with Pass@k"):
        nbu.passk_runs(tmp_path)
    df = nbu.diversity_runs(tmp_path)
    assert list(df["label"]) == ["temperature"]
    assert nbu.divergence_curves(df) == [("temperature", [64.0, 128.0], [0.5, 0.4])]
