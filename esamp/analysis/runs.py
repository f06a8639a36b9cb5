"""Finished runs as the analysis reads them: results.json summaries and samples.jsonl records.

    find_results(root)      every results.json below a folder (a sweep, a campaign, one run)
    load_runs(root)         their contents, each with its folder under `_run_dir`
    read_results(run_dir)   one run's results.json ({} while it is still generating)
    load_samples(run_dir)   one run's sample records (samples.jsonl or the committed samples.jsonl.gz)
    run_labels(dirs)        the names tables and plots give runs (their folder names)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from esamp.tasks.data import open_text


def find_results(root: str | Path) -> list[Path]:
    """Every results.json below `root` (or `root` itself when it is one), in path order."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    return sorted(p for p in root.rglob("results.json") if ".submitit" not in p.parts)


def load_runs(root_or_paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """results.json contents, each with its folder under `_run_dir`. Unreadable files are skipped with a
    warning (a run still writing its summary, or a hand-edited file)."""
    if isinstance(root_or_paths, (str, Path)):
        paths = find_results(root_or_paths)
    else:
        paths = [q for p in root_or_paths for q in find_results(p)]
    runs = []
    for p in paths:
        try:
            run = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"warning: skipping {p}: {err}", file=sys.stderr)
            continue
        run["_run_dir"] = str(Path(p).parent.resolve())
        runs.append(run)
    return runs


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run folder; {} when there is none yet (a run still generating)."""
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `samples.jsonl` (or `samples.jsonl.gz`, for runs gzipped to commit them). A torn
    last line (a run still writing) is skipped; a repeated (problem, sample) keeps the last copy, as the
    sample store does on resume."""
    d = Path(run_dir)
    path = next((d / f for f in ("samples.jsonl", "samples.jsonl.gz") if (d / f).exists()), None)
    if path is None:
        raise FileNotFoundError(f"{d} has no samples.jsonl or samples.jsonl.gz")
    with open_text(path) as f:
        lines = f.read().split("\n")[:-1]  # the part after the last newline is empty or torn
    records = {}
    for line in lines:
        if line.strip():
            r = json.loads(line)
            records[(r["problem_id"], r["sample_index"])] = r
    return list(records.values())


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Run folder names (the arm names of results/<claim>/<arm>/), with the parent when names repeat."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
