"""Table helpers shared by the comparison, the frontier, sweeps and notebooks: Markdown without `tabulate`,
settings written as a person types them, and which columns of a run table vary."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence


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
