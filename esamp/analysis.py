"""Reading finished runs and comparing them (the numbers); figures: `esamp.plotting`; the comparison's
report files (Markdown, CSV, PNG): `esamp.comparison`.

    from esamp.analysis import compare_runs, write_comparison
    res = compare_runs(["results/x/esamp"], baseline="results/x/temperature")   # paired, per problem

* runs: `find_results` / `load_runs` (results.json files), `load_samples` (samples.jsonl or .jsonl.gz);
* the paired comparison of the evidence protocol (§2): per-problem Pass@k (the estimator of
  `esamp.metrics.passk`) of an arm and the baseline on the problems both ran, the mean difference with a
  percentile interval from a bootstrap over problems, solved-only counts, a MATH-500 per-level breakdown,
  and answer diversity (distinct extracted answers per problem);
* small table helpers (`markdown_table`, `fmt_value`, `varying`) shared by sweeps and notebooks.

`esamp.comparison.write_comparison` writes a comparison's files (`scripts/compare.py`); `esamp.aggregate`
(sweep tables), `esamp.frontier` and `esamp.notebook_utils` build on the helpers here.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from esamp.metrics.passk import pass_at_k
from esamp.metrics.programs import canonical_program
from esamp.tasks.data import open_text


DEFAULT_KS = (1, 2, 4, 8, 16)


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


def sample_answer(r: dict[str, Any]) -> str | None:
    """The answer a sample's diversity is counted on: the extracted final answer (math, multiple choice),
    else, for code tasks (a HumanEval record has no extracted answer but its problem's entry point), the
    normal form of its program (`esamp.metrics.programs`), so that reformatted or renamed copies of one
    program count once."""
    ans = r.get("extracted")
    entry_point = (r.get("problem_meta") or {}).get("entry_point")
    if ans is None and entry_point and r.get("completion"):
        return canonical_program(r["completion"], entry_point)
    return ans


def problem_table(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """problem id -> {n, c (correct samples), level (MATH-500, else None), answers, answer_ok}; `answers`
    are the samples' answers stripped (`sample_answer`; None when the sample gave none), `answer_ok` their
    grades."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(samples, key=lambda r: (str(r["problem_id"]), r["sample_index"])):
        p = out.setdefault(str(r["problem_id"]), {"n": 0, "c": 0, "answers": [], "answer_ok": [],
                                                   "level": (r.get("problem_meta") or {}).get("level")})
        ok = bool(r.get("correct"))  # None (ungraded) counts as not correct
        ans = sample_answer(r)
        p["n"] += 1
        p["c"] += ok
        p["answers"].append(str(ans).strip() or None if ans is not None else None)
        p["answer_ok"].append(ok)
    return out


def run_n(table: dict[str, dict[str, Any]], name: str) -> int:
    """The samples per problem of one run; a run mixing several n is refused (Pass@k would not pair)."""
    ns = Counter(p["n"] for p in table.values())
    if len(ns) != 1:
        raise ValueError(f"{name}: problems have different numbers of samples {dict(ns)}")
    return next(iter(ns))


def passk_matrix(table: dict[str, dict[str, Any]], ids: Sequence[str], ks: Sequence[int]) -> np.ndarray:
    """(problems, ks) per-problem Pass@k, unbiased estimator."""
    return np.array([[pass_at_k(table[i]["n"], table[i]["c"], k) for k in ks] for i in ids], dtype=float)


def bootstrap_weights(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_items) weights: row r times the values = the mean of bootstrap resample r (items drawn
    with replacement). Stored as counts / n_items so that all arms share the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(resamples, n_items)) + np.arange(resamples)[:, None] * n_items
    counts = np.bincount(idx.ravel(), minlength=resamples * n_items).reshape(resamples, n_items)
    return counts / n_items


def interval(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap means, per column."""
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


def paired_rows(arm: dict, base: dict, ids: Sequence[str], ks: Sequence[int], resamples: int,
                seed: int) -> list[dict[str, Any]]:
    """One row per k: both Pass@k, the mean paired difference (arm - baseline) and its 95% interval, and
    the problems solved (>= 1 correct of n) by the arm only, the baseline only, both, neither."""
    a, b = passk_matrix(arm, ids, ks), passk_matrix(base, ids, ks)
    boot = bootstrap_weights(len(ids), resamples, seed) @ (a - b)
    lo, hi = interval(boot)
    sa = np.array([arm[i]["c"] > 0 for i in ids])
    sb = np.array([base[i]["c"] > 0 for i in ids])
    solved = {"arm_only": int((sa & ~sb).sum()), "baseline_only": int((~sa & sb).sum()),
              "both": int((sa & sb).sum()), "neither": int((~sa & ~sb).sum())}
    return [{"k": k, "problems": len(ids), "arm_pass": float(a[:, j].mean()), "baseline_pass": float(b[:, j].mean()),
             "diff": float((a - b)[:, j].mean()), "diff_lo": float(lo[j]), "diff_hi": float(hi[j]), **solved}
            for j, k in enumerate(ks)]


def passk_band(table: dict, ids: Sequence[str], ks: Sequence[int], resamples: int, seed: int) -> dict[str, list]:
    """Mean Pass@k over `ids` with its 95% bootstrap band (for the curves)."""
    a = passk_matrix(table, ids, ks)
    lo, hi = interval(bootstrap_weights(len(ids), resamples, seed) @ a)
    return {"k": list(ks), "mean": a.mean(0).tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def _distinct(p: dict[str, Any], correct_only: bool = False) -> int:
    return len({a for a, ok in zip(p["answers"], p["answer_ok"]) if a is not None and (ok or not correct_only)})


def answer_diversity(table: dict, ids: Sequence[str]) -> dict[str, float]:
    """Mean distinct answers per problem (stripped strings, or program normal forms on code; a sample
    without one does not count), mean distinct *correct* answers per problem (the question the framework
    asks: on math one answer is correct, so this is ~Pass@n; on code it counts distinct correct programs),
    the fraction of samples without an answer, and the fraction of problems whose distinct answers include a
    correct one (graded per sample, so this equals the fraction solved, Pass@n)."""
    distinct = [_distinct(table[i]) for i in ids]
    distinct_ok = [_distinct(table[i], correct_only=True) for i in ids]
    missing = [sum(x is None for x in table[i]["answers"]) / table[i]["n"] for i in ids]
    hit = [any(table[i]["answer_ok"]) for i in ids]
    return {"problems": len(ids), "distinct_answers": float(np.mean(distinct)) if ids else math.nan,
            "distinct_correct": float(np.mean(distinct_ok)) if ids else math.nan,
            "no_answer": float(np.mean(missing)) if ids else math.nan,
            "correct_among": float(np.mean(hit)) if ids else math.nan}


def paired_diversity(arm: dict, base: dict, ids: Sequence[str], resamples: int, seed: int) -> list[dict[str, Any]]:
    """Distinct answers and distinct correct answers per problem, arm - baseline, paired per problem, with
    the 95% interval from the same bootstrap resamples as the Pass@k rows."""
    measures = {"distinct_answers": False, "distinct_correct": True}  # name -> count correct answers only
    a, b = (np.array([[_distinct(t[i], only) for only in measures.values()] for i in ids], dtype=float)
            for t in (arm, base))
    lo, hi = interval(bootstrap_weights(len(ids), resamples, seed) @ (a - b))
    return [{"measure": m, "problems": len(ids), "arm_mean": float(a[:, j].mean()), "baseline_mean": float(b[:, j].mean()),
             "diff": float((a - b)[:, j].mean()), "diff_lo": float(lo[j]), "diff_hi": float(hi[j])}
            for j, m in enumerate(measures)]


def _labels(paths: Sequence[Path]) -> list[str]:
    """Run folder names (the arm names of results/<claim>/<arm>/), with the parent when names repeat."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def compare_runs(arms: Sequence[str | Path], baseline: str | Path, ks: Sequence[int] = DEFAULT_KS,
                 resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of each arm with the baseline on the problems both ran.

    Returns {"rows": one dict per (arm, level, k) - level "all", then each MATH-500 level -, "notes": what
    was dropped, "diversity_rows": distinct (correct) answers per problem, arm - baseline, paired, "curves"
    and "diversity": per run over the problems common to all runs, "runs": name -> {dir, results, n}}. Raises ValueError when a run's n differs from the baseline's."""
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    dirs = [Path(baseline).resolve()] + [Path(a).resolve() for a in arms]
    names = _labels(dirs)
    tables = {nm: problem_table(load_samples(d)) for nm, d in zip(names, dirs)}
    ns = {nm: run_n(t, nm) for nm, t in tables.items() if t}
    base_name, base = names[0], tables[names[0]]
    for nm, t in tables.items():
        if not t:
            raise ValueError(f"{nm}: samples file has no complete record")
        if ns[nm] != ns[base_name]:
            raise ValueError(f"{nm} has n={ns[nm]} samples per problem, the baseline {base_name} n={ns[base_name]}: "
                             "Pass@k of different n do not pair; rerun with the same sampler.n")
    n = ns[base_name]
    ks_used = [k for k in ks if 1 <= k <= n]
    notes = [f"k > n={n} left out: {[k for k in ks if k > n]}"] if len(ks_used) < len(ks) else []
    if not ks_used:
        raise ValueError(f"no k in {list(ks)} is <= n={n}")
    rows, div_rows = [], []
    for nm in names[1:]:
        arm = tables[nm]
        ids = sorted(set(arm) & set(base))
        if len(ids) < max(len(arm), len(base)):
            notes.append(f"{nm} vs {base_name}: {len(ids)} problems in common; dropped {len(set(arm) - set(base))} "
                         f"only in {nm}, {len(set(base) - set(arm))} only in {base_name}")
        if not ids:
            raise ValueError(f"{nm} and {base_name} have no problem in common")
        div_rows += [{"arm": nm, "baseline": base_name, **r} for r in paired_diversity(arm, base, ids, resamples, seed)]
        levels = sorted({arm[i]["level"] for i in ids if arm[i]["level"] is not None}, key=str)
        for level in ["all", *levels]:
            sub = ids if level == "all" else [i for i in ids if arm[i]["level"] == level]
            for row in paired_rows(arm, base, sub, ks_used, resamples, seed):
                rows.append({"arm": nm, "baseline": base_name, "level": level, "n": n, **row})
    common = sorted(set.intersection(*(set(t) for t in tables.values())))
    return {"rows": rows, "diversity_rows": div_rows, "notes": notes, "ks": ks_used, "n": n, "common": len(common), "baseline": base_name,
            "resamples": resamples, "seed": seed,
            "curves": {nm: passk_band(t, common, ks_used, resamples, seed) for nm, t in tables.items()} if common else {},
            "diversity": {nm: answer_diversity(t, common) for nm, t in tables.items()},
            "runs": {nm: {"dir": str(d), "results": read_results(d), "n": ns[nm]} for nm, d in zip(names, dirs)}}


def fmt_value(v: Any) -> str:
    """A setting as written (0.25, not 0.250)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def varying(df, col: str, ignore_missing: bool = False) -> bool:
    """Whether column `col` of a DataFrame takes more than one value (lists and dicts compared as JSON)."""
    values = df[col].dropna() if ignore_missing else df[col]
    return values.map(lambda v: json.dumps(v, default=str)).nunique() > 1


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """A GitHub-flavoured markdown table of pre-formatted cells (no `tabulate` needed); numeric columns
    are right-aligned."""
    numeric = list(numeric) or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in numeric) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
