"""Within-sample repetition: does a sample loop (repeat some n-word sequence)? A loop lowers a judge's
perplexity without making the text better, so the writing campaign reports the loop rate beside perplexity
and recomputes its frontier without looping samples (`esamp.analysis.writing_quality`)."""
from __future__ import annotations

from collections import Counter

from esamp.metrics.diversity import ngrams

LOOP_NGRAM = 8  # the writing campaign's rule: some 8-word sequence occurs twice
LOOP_MIN_COUNT = 2


def loops(text: str, n: int = LOOP_NGRAM, min_count: int = LOOP_MIN_COUNT) -> bool:
    """True when some n-word sequence (whitespace words, case kept: a loop repeats the same words) occurs at
    least `min_count` times in the text."""
    counts = Counter(ngrams(text.split(), n))
    return bool(counts) and max(counts.values()) >= min_count
