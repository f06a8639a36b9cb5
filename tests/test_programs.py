"""Program normal forms (esamp.metrics.programs): what counts as one program when distinct correct answers
are counted on HumanEval, and how the paired comparison uses it (esamp.analysis.compare)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from esamp.analysis.compare import compare_runs
from esamp.metrics.programs import MAX_CHARS, canonical_program

BASE = '''Here is the function:

```python
from typing import List


def below_zero(operations: List[int]) -> bool:
    """True when the balance drops below zero."""
    balance = 0
    for op in operations:
        balance += op  # running sum
        if balance < 0:
            return True
    return False
```
'''

# The same program: other names, no annotations or docstring, other formatting and comments, a helper import,
# example usage and a __main__ block, a second (earlier) draft in another fence is not the final answer.
SAME = '''```python
import math
def below_zero(xs):
    total=0
    for x in xs:
        total += x
        if total < 0: return True
    return False

print(below_zero([1, -2]))
if __name__ == "__main__":
    below_zero([])
```'''

OTHER_ALGORITHM = '''```python
def below_zero(operations):
    from itertools import accumulate
    return any(s < 0 for s in accumulate(operations))
```'''


def test_equivalent_spellings_share_one_form():
    base = canonical_program(BASE, "below_zero")
    assert base is not None and base == canonical_program(SAME, "below_zero")
    assert "below_zero" in base and "balance" not in base and '"""' not in base and "List" not in base
    assert canonical_program(OTHER_ALGORITHM, "below_zero") not in (None, base)


def test_renaming_is_by_position_not_by_name():
    # f(a, b) = a - b and f(b, a) = a - b compute different functions: a renaming that sorted names, or
    # mapped every local to one placeholder, would merge them.
    one = canonical_program("```python\ndef f(a, b):\n    return a - b\n```", "f")
    two = canonical_program("```python\ndef f(b, a):\n    return a - b\n```", "f")
    three = canonical_program("```python\ndef f(x, y):\n    return x - y\n```", "f")
    assert one == three != two
    # names the program reads but never binds keep their spelling: sum and len are different programs
    assert canonical_program("```python\ndef f(v):\n    return sum(v)\n```", "f") != \
        canonical_program("```python\ndef f(v):\n    return len(v)\n```", "f")


def test_scope_declarations_and_keywords_are_renamed_consistently():
    src = ("```python\ncount = 0\ndef helper(n, step=1):\n    global count\n    count += step\n    return n\n"
           "def f(x):\n    return helper(x, step=2)\n```")
    form = canonical_program(src, "f")
    renamed = src.replace("count", "c").replace("helper", "h").replace("step", "s")
    assert form == canonical_program(renamed, "f")
    compile(form, "<form>", "exec")  # still a program: `global` names and keywords follow the renaming
    assert "def f(" in form and "step" not in form and "count" not in form


def test_raw_continuation_and_bad_input():
    # raw (non-chat) continuation of a HumanEval prompt: a function body, parsed inside a stand-in def
    body = "    return sorted(set(l))\n"
    assert canonical_program(body, "unique") == "def unique():\n    return sorted(set(l))"
    assert canonical_program("    # dedupe\n    return sorted( set(l) )\n\n", "unique") == canonical_program(body, "unique")
    for bad in ("", "I cannot solve this.", "```python\ndef f(:\n```", "x = 1\nprint(x)",
                "```python\n" + "(" * 200_000 + "\n```", "def f():\n" + "    pass\n" * MAX_CHARS):
        assert canonical_program(bad, "f") is None


def write_code_run(path: Path, programs: dict[str, list[tuple[str, bool]]]) -> Path:
    """A HumanEval-style run: records carry the completion, no extracted answer, the entry point."""
    path.mkdir(parents=True)
    with open(path / "samples.jsonl", "w") as f:
        for pid, samples in programs.items():
            for i, (completion, ok) in enumerate(samples):
                f.write(json.dumps({"problem_id": pid, "sample_index": i, "completion": completion, "correct": ok,
                                    "extracted": None, "tokens": 9, "finish_reason": "eos",
                                    "problem_meta": {"entry_point": "below_zero"}}) + "\n")
    (path / "results.json").write_text(json.dumps({"task": "humaneval", "sampler": {"n": 4}}))
    return path


def test_comparison_counts_distinct_correct_programs(tmp_path):
    # baseline: 4 correct samples that are one program spelt twice; 0 correct on problem b
    base = write_code_run(tmp_path / "base", {"a": [(BASE, True), (SAME, True), (BASE, True), ("no code", False)],
                                             "b": [(BASE, False)] * 4})
    # arm: two distinct correct programs on a, one on b
    arm = write_code_run(tmp_path / "arm", {"a": [(BASE, True), (OTHER_ALGORITHM, True), (SAME, True), (BASE, False)],
                                           "b": [(OTHER_ALGORITHM, True)] + [(BASE, False)] * 3})
    res = compare_runs([arm], base, ks=[1], resamples=2000)
    div = res["diversity"]
    assert div["base"]["distinct_answers"] == pytest.approx(1.0)  # the spellings are one program
    assert div["base"]["distinct_correct"] == pytest.approx(0.5)
    assert div["base"]["no_answer"] == pytest.approx(1 / 8)
    assert div["arm"]["distinct_answers"] == pytest.approx(2.0)
    assert div["arm"]["distinct_correct"] == pytest.approx(1.5)
    paired = {r["measure"]: r for r in res["diversity_rows"]}
    assert paired["distinct_correct"]["diff"] == pytest.approx(1.0)  # (2 - 1) and (1 - 0)
    assert paired["distinct_correct"]["diff_lo"] == paired["distinct_correct"]["diff_hi"] == pytest.approx(1.0)
    assert paired["distinct_answers"]["diff"] == pytest.approx(1.0)
