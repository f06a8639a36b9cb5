"""Grading of free-form math answers (MATH-500 style): last ``\\boxed{}`` vs the gold answer.

Public API:
    extract_boxed(text)              -> content of the last \\boxed{...} / \\fbox{...}, or None
    final_boxes(text)                -> contents of the last box and the boxes just before it (see below)
    last_boxed_in_solution(solution) -> same as extract_boxed
    is_correct(response, gold, timeout=5.0) -> bool
    grade_math(response, gold, timeout=5.0) -> {"correct": bool, "extracted": str | None,
                                                "failure": None | "no_answer" | "wrong" | "timeout" | "parse_error"}
    answers_equivalent(gold, pred, timeout=5.0) -> bool   (bare answers, no extraction)
    check_equivalence(gold, pred, timeout=5.0) -> (bool, how)  (same, says why: timeout, error...)

Several boxes: the last box decides. Only when it does not match and the gold answer is a list (top-level
commas: "2, 5", "(1,2), (3,4)") are the boxes of the response's final part (the last box and the boxes
just before it, each within MAX_BOX_GAP characters of the next) joined with ", " and compared once more,
so "\\boxed{2} and \\boxed{5}" answers "2, 5". A single-answer gold is never matched by an earlier box.

Equivalence is decided by ``math_verify`` (sympy based). Parsing/simplifying arbitrary model output
with sympy can take unbounded time (``2^{10^{100}}``, giant polynomials), and math_verify's own
timeout uses ``signal.alarm``, which only works in the main thread — our graders run in thread pools.
So math_verify's timeouts are disabled (``parsing_timeout=None``, ``timeout_seconds=None``) and every
sympy comparison runs in a reusable worker subprocess (esamp.grading.timeout) that is killed when it
exceeds ``timeout``; a timeout or any error counts as *incorrect*. Trivially equal answers (same
string after light normalisation) are accepted in-process without touching sympy.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

from esamp.grading.timeout import CallTimeout, WorkerPool

__all__ = [
    "extract_boxed",
    "final_boxes",
    "last_boxed_in_solution",
    "is_correct",
    "grade_math",
    "answers_equivalent",
    "check_equivalence",
    "normalize_answer",
    "warmup",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
# Answers longer than this are not sent to sympy (no real answer is that long; parsing it is slow).
MAX_ANSWER_CHARS = 5000

# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------

_BOX_CMDS = ("\\boxed", "\\fbox")
_BRACE_TOKENS = re.compile(r"\\.|[{}]", re.DOTALL)
_BLANKS = re.compile(r"[ \t]*")


def _last_box_start(text: str) -> tuple[int, int] | None:
    """(start of the command, index right after its name) of the last \\boxed / \\fbox that is a whole
    command (not e.g. \\boxedfoo), or None."""
    best: tuple[int, int] | None = None
    for cmd in _BOX_CMDS:
        end = len(text)
        while True:
            i = text.rfind(cmd, 0, end)
            if i < 0:
                break
            j = i + len(cmd)
            if j < len(text) and text[j].isalpha():  # \boxedfoo, \fboxsep: not ours, look further left
                end = i
                continue
            if best is None or i > best[0]:
                best = (i, j)
            break
    return best


def _box_content(text: str, j: int) -> tuple[str, int] | None:
    """(stripped content, index after the box) of the box whose command name ends at `j`, or None if it
    is not a box (``\\boxed5``) or is unbalanced. Linear in the box's length."""
    n = len(text)
    k = _BLANKS.match(text, j).end()
    if k >= n:
        return None
    if text[k] != "{":
        if k == j:  # "\boxed5" is not a box; "\boxed 5" is
            return None
        m = re.match(r"[^\s$]+", text[k : k + 1000])
        if not m:
            return None
        content = m.group(0).rstrip(".,;")
        return (content, k + m.end()) if content else None
    depth = 0
    for m in _BRACE_TOKENS.finditer(text, k):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return text[k + 1 : m.start()].strip(), m.end()
        # else: an escaped character (\{, \}, \\ ...): does not count
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the LAST ``\\boxed{...}`` or ``\\fbox{...}`` (braces balanced, nesting allowed,
    escaped ``\\{``/``\\}`` ignored for balancing), stripped. Also ``\\boxed 5`` (content up to the
    next ``$``, newline or whitespace). None if there is no box or the last box is unbalanced
    (e.g. a truncated generation). Linear time, never raises."""
    if not isinstance(text, str) or not text:
        return None
    try:
        found = _last_box_start(text)
        if found is None:
            return None
        box = _box_content(text, found[1])
        return box[0] if box else None
    except Exception:  # pragma: no cover - defensive: grading must never crash a run
        return None


# Boxes further apart than this (characters between one box's end and the next box's start) are not one
# answer split over several boxes: "$x = \\boxed{2}$ and $x = \\boxed{5}$" has a gap of 12 characters.
MAX_BOX_GAP = 100
MAX_FINAL_BOXES = 12  # bounds the backward scan (each step is a linear search)


def final_boxes(text: str) -> list[str]:
    """Contents of the boxes that end the response, in order: the last complete box and, walking back,
    every box that ends at most MAX_BOX_GAP characters before the next one starts. [] if the last box is
    missing or unbalanced. A box nested inside another stops the walk. Never raises."""
    if not isinstance(text, str) or not text:
        return []
    try:
        out: list[str] = []
        limit = len(text)  # the next box (to the right) starts here
        while len(out) < MAX_FINAL_BOXES:
            found = _last_box_start(text[:limit]) if limit < len(text) else _last_box_start(text)
            if found is None:
                break
            box = _box_content(text, found[1])
            if box is None or (out and (box[1] > limit or limit - box[1] > MAX_BOX_GAP)):
                break
            out.append(box[0])
            limit = found[0]
        return out[::-1]
    except Exception:  # pragma: no cover - defensive
        return []


def _top_level_items(answer: str) -> int:
    """How many comma-separated items `answer` lists at bracket depth 0 ("2, 5" -> 2, "(1,2)" -> 1,
    "\\{1,2\\}" -> 1, "1{,}000" -> 1)."""
    depth, items = 0, 1
    for ch in answer:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items += 1
    return items


def last_boxed_in_solution(solution: str) -> str | None:
    """The reference answer of a MATH solution (its last box)."""
    return extract_boxed(solution)


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
# "50\%", "50%", "50 \text{ percent}", "50\text{\%}". Percent signs are dropped on both sides (MATH
# convention: an answer "50\%" is matched by "50"). We must do this ourselves: with the antlr 4.9.3
# runtime that hydra pins, latex2sympy2_extended 1.11 crashes on every percent number
# ("'AtomContext' object has no attribute 'FUNC_GAMMA'"), so math_verify cannot parse "50\%" at all.
_PERCENT = re.compile(r"\\text\{\s*(?:\\%|%|percent)\s*\}|\\%|%|\\mbox\{\s*percent\s*\}")
_DEGREE = re.compile(r"\\degree\b|\^\s*\{\s*\\circ\s*\}|\^\s*\\circ\b")


def _pre_normalize(s: str) -> str:
    """Meaning-preserving rewrites applied to both answers before any comparison."""
    s = s.strip()
    s = _UNESCAPED_DOLLAR.sub("", s)
    s = _PERCENT.sub("", s)
    s = _DEGREE.sub(lambda _m: "^\\circ", s)
    s = s.replace("\\varnothing", "\\emptyset")
    s = s.strip()
    # A trailing full stop from prose ("\boxed{7.}"); not an ellipsis.
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return s


_STRIP_CMDS = re.compile(r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\[!,;: ]|\\displaystyle|\\qquad|\\quad")
_WS = re.compile(r"\s+")


def normalize_answer(s: str) -> str:
    r"""Light normalisation for the in-process exact-match fast path (no sympy): pre-normalisation,
    \dfrac/\tfrac -> \frac, drop \left/\right, LaTeX spacing commands and all whitespace."""
    s = _pre_normalize(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _STRIP_CMDS.sub("", s)
    s = _WS.sub("", s)
    return s


# --------------------------------------------------------------------------------------------------
# math_verify comparison (runs in the worker process)
# --------------------------------------------------------------------------------------------------

_mv_cache: dict[str, Any] = {}


def _mv():
    """math_verify objects, imported lazily (only the worker process needs them)."""
    if not _mv_cache:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        # We disable math_verify's signal timeouts on purpose (see module docstring); silence its
        # per-call reminder about it.
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        _mv_cache.update(
            parse=parse,
            verify=verify,
            configs=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        )
    return _mv_cache


def _parse(ans: str):
    mv = _mv()
    return mv["parse"]("\\boxed{" + ans + "}", extraction_config=mv["configs"], parsing_timeout=None)


def _verify_unsafe(gold: str, pred: str) -> bool:
    """math_verify equivalence of two bare answers, no timeout. Call via answers_equivalent()."""
    return _verify_detail(gold, pred) == "match"


def _verify_detail(gold: str, pred: str) -> str:
    """"match", "mismatch", or "unparsable" (no math in `pred`: math_verify kept only its raw string,
    e.g. "\\frac{1}{}", and the strings differ). Runs in the worker; no timeout here."""
    mv = _mv()
    g = _parse(gold)
    p = _parse(pred)
    if g and p and mv["verify"](g, p, timeout_seconds=None):
        return "match"
    if not any(not isinstance(x, str) for x in p):
        return "unparsable"
    return "mismatch"


def _worker_init() -> None:
    """Run once in each worker at start-up: import math_verify/sympy and build the antlr parser and
    regex caches (~0.5 s), so that this cost never counts against a comparison's timeout."""
    _verify_unsafe("\\frac{1}{2}", "0.5")


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_n_errors_logged = 0


def _get_pool() -> WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(preload=("esamp.grading.math:_worker_init",))
        return _pool


def warmup(n: int = 1) -> None:
    """Start grading workers now (first start imports sympy, ~1 s)."""
    _get_pool().warmup(n)


def check_equivalence(gold: str, pred: str, timeout: float | None = DEFAULT_TIMEOUT, fast_path: bool = True) -> tuple[bool, str]:
    """(equivalent?, how): how is one of "fast_match" (equal strings after normalisation, no sympy),
    "match", "mismatch", "unparsable" (math_verify found no mathematical expression in `pred`),
    "timeout" (sympy exceeded `timeout` s; the worker was killed), "error" (any exception) or
    "invalid" (empty / non-string / absurdly long input). Never raises."""
    try:
        if not isinstance(gold, str) or not isinstance(pred, str):
            return False, "invalid"
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False, "invalid"
        if fast_path:
            ng, np_ = normalize_answer(gold), normalize_answer(pred)
            if ng and ng == np_:
                return True, "fast_match"
        g, p = _pre_normalize(gold), _pre_normalize(pred)
        if not g or not p:
            return False, "invalid"
        how = _get_pool().call("esamp.grading.math:_verify_detail", g, p, timeout=timeout)
        return how == "match", how
    except CallTimeout:
        return False, "timeout"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - grading must never crash a run
        # Loud for the first few: if the worker cannot start (e.g. math_verify missing), every
        # non-trivial answer would silently grade False.
        global _n_errors_logged
        _n_errors_logged += 1
        log = logger.warning if _n_errors_logged <= 5 else logger.debug
        log("math comparison failed (graded incorrect): %s: %s", type(e).__name__, str(e)[:300])
        return False, "error"


def answers_equivalent(gold: str, pred: str, timeout: float | None = DEFAULT_TIMEOUT, fast_path: bool = True) -> bool:
    """Whether two bare answers (no \\boxed) are mathematically equivalent (gold first: math_verify
    is not symmetric). Never raises: errors, timeouts and unparsable inputs give False. `timeout` is
    a hard wall-clock limit in seconds for the sympy comparison (None: no limit)."""
    return check_equivalence(gold, pred, timeout=timeout, fast_path=fast_path)[0]


# check_equivalence's `how` for an answer that did not match -> the sample's failure reason.
_FAILURE = {"mismatch": "wrong", "timeout": "timeout", "error": "parse_error", "unparsable": "parse_error",
            "invalid": "parse_error"}


def grade_math(response: str, gold: str, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """{"correct": bool, "extracted": the answer graded, "failure": why not correct}.

    `extracted` is the last box, or the final boxes joined with ", " when that is what matched a list gold
    (module docstring). `failure` is None when correct, else "no_answer" (no complete box, or an empty
    one), "wrong" (parsed and compared: not equivalent), "timeout" (a comparison exceeded `timeout`) or
    "parse_error" (the answer is no mathematical expression math_verify can read, is absurdly long, or
    the comparison raised)."""
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    boxes = final_boxes(response) if isinstance(response, str) else []
    extracted = boxes[-1] if boxes else None
    if extracted is None or not extracted.strip():
        return {"correct": False, "extracted": extracted, "failure": "no_answer"}
    if not isinstance(gold, str):  # a task bug, not the model's: no gold answer to compare with
        return {"correct": False, "extracted": extracted, "failure": "parse_error"}
    ok, how = check_equivalence(gold, extracted, timeout=timeout)
    if ok:
        return {"correct": True, "extracted": extracted, "failure": None}
    failure = _FAILURE.get(how, "wrong")
    if len(boxes) > 1 and _top_level_items(gold) > 1:
        # One item per box ("\\boxed{2} and \\boxed{5}" for "2, 5"): only for a list gold, so an earlier
        # box can never stand in for a single answer.
        joined = ", ".join(boxes)
        ok_joined, how_joined = check_equivalence(gold, joined, timeout=timeout)
        if ok_joined:
            return {"correct": True, "extracted": joined, "failure": None}
        if how_joined == "timeout":
            failure = "timeout"
    return {"correct": False, "extracted": extracted, "failure": failure}


def is_correct(response: str, gold: str, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
    """True iff the last boxed answer in `response` is equivalent to `gold` (a bare LaTeX answer)."""
    return grade_math(response, gold, timeout=timeout)["correct"]
