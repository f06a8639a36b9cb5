r"""Multiple-choice answer extraction (GPQA style, options A-D).

``extract_choice(response)`` returns "A".."D" or None. Rules, first that matches wins:

1. The last ``Answer: X`` (case-insensitive; tolerates markdown and brackets:
   ``**Answer:** (B)``, ``Answer: B.``, ``answer : c``, ``Final Answer: $\boxed{D}$``).
2. The last "answer is X" (``the answer is (C)``, ``The correct answer is: **B**``).
3. The last ``\boxed{X}`` (``\boxed{\text{B}}``, ``\boxed{(B)}``).
4. The last non-empty line is a lone letter: ``X``, ``(X)``, ``X.``, ``**X**``.

Letters inside words never count ("Absolutely" is not A): the letter must not be followed by a
letter or digit (and what precedes it is anchored: "answer", "\boxed{", or the start of the line).
A *lowercase* letter is only accepted when followed by ")" or by nothing but punctuation on its line,
so "answer: a bit of both" is not read as A. Only the last 5000 characters are looked at, and the
patterns have no nested or adjacent overlapping quantifiers, so matching is linear and never hangs.
"""
from __future__ import annotations

import re

__all__ = ["extract_choice", "CHOICES", "MAX_CHARS"]

CHOICES = "ABCD"
MAX_CHARS = 5000

_LETTER = r"([A-Da-d])(?![A-Za-z0-9])"
# What may sit between the anchor and the letter: spaces, markdown, brackets, $, an optional
# \boxed{ / \text{ / \textbf{ ... and an optional "option"/"choice" word. Each run of filler is ONE
# character class and consecutive runs are separated by a mandatory token, so matching is linear.
_OPEN = r"[ \t*_$:({\[]*(?:\\(?:boxed|text|textbf|mathrm|mathbf)\{[ \t(\[]*)?(?:(?:option|choice)[ \t(\[]*)?"

_ANSWER_LINE = re.compile(r"(?<![A-Za-z])answer[ \t*_]*[:：]" + _OPEN + _LETTER, re.IGNORECASE)
_ANSWER_IS = re.compile(
    r"(?<![A-Za-z])answer[ \t*_]+(?:is|would[ \t]+be|should[ \t]+be)(?![A-Za-z])" + _OPEN + _LETTER, re.IGNORECASE
)
_BOXED = re.compile(r"\\boxed\{[ \t(\[]*(?:\\(?:text|textbf|mathrm|mathbf)\{[ \t(\[]*)?([A-Da-d])[ \t)\]]*(?:\}[ \t]*)?\}")
_LONE = re.compile(r"[ \t*_$(\[]*(?:\\boxed\{[ \t(\[]*)?([A-Da-d])[ \t.*_$)\]}]*")
_ONLY_PUNCT_TO_EOL = re.compile(r"[ \t\r\f\v)\]}*_$.,:;!]*(?:\n|$)")


def _accept(text: str, m: re.Match) -> bool:
    """Uppercase letters are always accepted; lowercase ones only if directly followed by ")" or
    if the rest of their line is punctuation/whitespace (so the article in "answer: a bit of both"
    is not read as option A)."""
    if m.group(1).isupper():
        return True
    end = m.end(1)
    if text.startswith(")", end):
        return True
    return _ONLY_PUNCT_TO_EOL.match(text, end) is not None


def _last(pattern: re.Pattern, text: str) -> str | None:
    found = None
    for m in pattern.finditer(text):
        if _accept(text, m):
            found = m.group(1).upper()
    return found


def extract_choice(response: str) -> str | None:
    """"A".."D" (uppercase) picked by the model in `response`, or None. Never raises."""
    if not isinstance(response, str) or not response:
        return None
    text = response[-MAX_CHARS:]
    for pattern in (_ANSWER_LINE, _ANSWER_IS, _BOXED):
        found = _last(pattern, text)
        if found:
            return found
    for line in reversed(text.splitlines()):
        if line.strip():
            m = _LONE.fullmatch(line)
            return m.group(1).upper() if m else None
    return None
