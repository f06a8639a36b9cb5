"""The task interface: a benchmark is a small object that loads problems, builds prompts and grades.

The pipeline only talks to this interface, so a new benchmark is one file plus one config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    """One benchmark item.

    `prompt` is either a list of chat messages ({"role", "content"}) that the model wrapper renders with
    the model's chat template, or a raw string fed to the model as is (`raw=True`, e.g. book continuation).
    """

    id: str
    prompt: list[dict[str, str]] | str
    gold: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def raw(self) -> bool:
        return isinstance(self.prompt, str)


class Task:
    """Base class. Subclasses set `name` and implement `load` and `grade`."""

    name: str = "task"
    # Strings that end a completion early (in addition to EOS); the loop stops a row when one appears.
    stop_strings: tuple[str, ...] = ()
    # Keep each sample's generated token ids in samples.jsonl (tasks whose metrics need them).
    store_token_ids: bool = False
    max_new_tokens: int  # set by each task from its yaml (task.max_new_tokens)

    def prepare(self, lm) -> None:
        """Called once the generating model is loaded (e.g. to keep its tokenizer)."""

    def load(self) -> list[Problem]:
        raise NotImplementedError

    def grade(self, problem: Problem, completion: str) -> dict[str, Any]:
        """Grade one completion. Must never raise on model output and must return at least
        {"correct": bool | None, "extracted": <answer or None>}; `correct=None` means "not graded"
        (e.g. open-ended writing), which the Pass@k code skips."""
        raise NotImplementedError

    def grade_many(self, problem: Problem, completions: list[str]) -> list[dict[str, Any]]:
        """Grade all samples of one problem. Tasks with expensive grading (code execution) override
        this to run checks in parallel."""
        return [self.grade(problem, c) for c in completions]

    def regrade(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Called once at the end of a run, before Pass@k: grade again what grading during generation may
        have got wrong (HumanEval: checks that timed out while decoding held the cores), updating the records
        in place. Returns what was done (written to results.json), or None: nothing to regrade (default)."""
        return None

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Task-specific metrics over all sample records (e.g. diversity for creative writing).
        Default: none beyond Pass@k, which the pipeline computes for every task with `correct`."""
        return {}
