"""Multiple-choice (GPQA) answer extraction."""
from __future__ import annotations

import time

import pytest

from esamp.grading.choice import MAX_CHARS, extract_choice


@pytest.mark.parametrize(
    "response, expected",
    [
        # 1. "Answer: X" lines
        ("Some reasoning.\nAnswer: B", "B"),
        ("Some reasoning.\n**Answer:** (B)", "B"),
        ("Answer: B.", "B"),
        ("answer: c", "C"),
        ("answer : c", "C"),
        ("ANSWER: D", "D"),
        ("**Answer: C**", "C"),
        ("Answer: [A]", "A"),
        ("Answer: (A) 42 kJ/mol", "A"),
        ("Answer: B because the other options violate parity.", "B"),
        ("Final Answer: $\\boxed{D}$", "D"),
        ("Answer: \\text{(B)}", "B"),
        ("Answer: option c", "C"),
        ("answer: b) the second one", "B"),  # lowercase followed by ")" is a label, not a word
        # 2. "answer is X"
        ("Thinking...\nSo the answer is (C).", "C"),
        ("therefore the answer is b.", "B"),
        ("The correct answer is: **B**", "B"),
        ("so the answer is option D, as shown", "D"),
        ("the answer is \\(\\boxed{A}\\)", "A"),
        # 3. \boxed{X}
        ("We conclude \\boxed{\\text{B}} holds.", "B"),
        ("Result: \\boxed{(C)} ok", "C"),
        # 4. final lone letter
        ("Reasoning over several lines.\n\nC", "C"),
        ("Reasoning.\n(C)\n\n", "C"),
        ("Reasoning.\nD.", "D"),
        ("Reasoning.\n**A**", "A"),
        ("Reasoning.\nb", "B"),
    ],
)
def test_formats(response, expected):
    assert extract_choice(response) == expected


def test_last_answer_line_wins():
    assert extract_choice("Answer: A\nHmm, wait, that's wrong.\nAnswer: C\nI'm confident.") == "C"
    assert extract_choice("Answer: D\nAnswer: B") == "B"


def test_answer_line_beats_fallbacks():
    # The explicit "Answer:" line has priority over a later "answer is" phrase and a trailing letter.
    assert extract_choice("Answer: B\nSome say the answer is C.\nD") == "B"
    # ... and "answer is" beats a trailing lone letter.
    assert extract_choice("I believe the answer is (A).\nC") == "A"


@pytest.mark.parametrize(
    "response",
    [
        "",
        "Absolutely",
        "Absolutely, this is clear.\nAnswer: Absolutely",
        "Answer: Cannot be determined",
        "answer: a bit of both",  # the article "a", not option A
        "The options are A, B and C; all are plausible.",
        "I think it is B.\nDone",  # no anchor and last line is not a lone letter
        "Answer: E",  # outside A-D
        "Answers: see above",
        "Bad\nDog",
        "\\boxed{42}",
        "the answer is 42",
    ],
)
def test_none(response):
    assert extract_choice(response) is None


def test_non_string_input_is_none():
    assert extract_choice(None) is None  # type: ignore[arg-type]
    assert extract_choice(123) is None  # type: ignore[arg-type]


def test_only_tail_is_read():
    # An answer further back than MAX_CHARS characters is ignored (bounded work per response).
    far = "Answer: B\n" + "x" * (MAX_CHARS + 10)
    assert extract_choice(far) is None
    assert extract_choice("x" * 100_000 + "\nAnswer: D") == "D"


@pytest.mark.parametrize(
    "adversarial",
    [
        "answer is" + " " * 100_000 + "Z",
        "answer:" + " \t*" * 30_000 + "Z",
        "answer: " * 20_000,
        "\\boxed{(" * 20_000,
        "(" * 50_000 + "[" * 50_000,
        " " * 100_000 + "Z",
        "answer: a" + " " * 50_000 + "x",
    ],
)
def test_never_hangs(adversarial):
    t0 = time.perf_counter()
    assert extract_choice(adversarial) is None
    assert time.perf_counter() - t0 < 0.5
