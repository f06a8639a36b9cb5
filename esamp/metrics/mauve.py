"""MAUVE (Pillutla et al. 2021) between generated and human text, as in the Contrastive Decoding protocol,
with features from a local causal LM and a bootstrap over prompts that reuses one quantization.

    feats = lm_features(lm, token_id_lists)                  # (n, d): last token's final hidden state
    labels, k = quantize(p_feats, q_feats)                   # mauve-text's own k-means binning, cluster labels
    mauve_from_counts(p_counts, q_counts)                    # MAUVE of histograms, rows vectorized
    mauve_score(p_feats, q_feats)                            # mauve-text's compute_mauve (the reference value)

Features follow mauve-text's `featurize_tokens_from_model` (the last layer's hidden state at the text's last
token) with a model that installs offline (SmolLM2-135M in the writing campaign; the protocol's GPT-2 large
would download from the hub). `quantize` repeats mauve-text's `cluster_feats` (l2-normalised, PCA to 90% of
the variance, faiss k-means with the same seeds) but returns the labels, so that a bootstrap over prompts can
re-weight the histograms without clustering again: the interval is conditional on one quantization.
`mauve_from_counts` is mauve-text's divergence curve and area, for many histogram pairs at once; on the
same data it equals `compute_mauve(...).mauve` (tests/test_writing_quality.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

SCALING = 5.0  # mauve-text's default mauve_scaling_factor
GRID = 25  # its divergence_curve_discretization_size


def auto_buckets(n_p: int, n_q: int) -> int:
    """mauve-text's `num_buckets='auto'`: a tenth of the smaller sample, at least 2."""
    return max(2, int(round(min(n_p, n_q) / 10)))


def lm_features(lm, token_ids: Sequence[Sequence[int]], batch_size: int = 16, max_tokens: int = 256) -> np.ndarray:
    """(n, hidden) float32: the final (normed) hidden state at each text's last token, texts given as token
    ids, cut to their first `max_tokens`, right-padded in batches sorted by length."""
    import torch

    seqs = [list(t)[:max_tokens] or [lm.tokenizer.eos_token_id or 0] for t in token_ids]
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), 0), dtype=np.float32)
    rows: dict[int, np.ndarray] = {}
    body = lm.model.get_decoder()
    with torch.no_grad():
        for start in range(0, len(seqs), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, i in enumerate(idx):
                ids[j, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[j, : len(seqs[i])] = 1
            dev = next(lm.model.parameters()).device
            h = body(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
            last = mask.sum(1) - 1
            for j, i in enumerate(idx):
                rows[int(i)] = h[j, int(last[j])].float().cpu().numpy()
    if rows:
        out = np.stack([rows[i] for i in range(len(seqs))])
    return out


def quantize(p: np.ndarray, q: np.ndarray, num_buckets: int | str = "auto", seed: int = 25,
             explained_variance: float = 0.9, num_redo: int = 5, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, int]:
    """(p_labels, q_labels, k): mauve-text's `cluster_feats` (norm l2, no whitening, PCA to
    `explained_variance`, faiss k-means, seeds as there; seed 25 is compute_mauve's default) returning the
    cluster of each text instead of the histograms."""
    import faiss
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    k = auto_buckets(len(p), len(q)) if num_buckets == "auto" else int(num_buckets)
    data = normalize(np.vstack([q, p]).astype(np.float64), norm="l2", axis=1)
    pca = PCA(n_components=None, whiten=False, random_state=seed + 1).fit(data)
    dims = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= explained_variance)) + 1
    data = pca.transform(data)[:, :dims].astype(np.float32)
    km = faiss.Kmeans(data.shape[1], k, niter=max_iter, verbose=False, nredo=num_redo, update_index=True,
                      seed=seed + 2)
    km.train(data)
    _, labels = km.index.search(data, 1)
    labels = labels.reshape(-1)
    return labels[len(q):], labels[: len(q)], k


def mauve_from_counts(p_counts: np.ndarray, q_counts: np.ndarray, scaling: float = SCALING,
                      grid: int = GRID) -> np.ndarray:
    """MAUVE of histogram pairs: rows of `p_counts`, `q_counts` (..., k) are (unnormalised) counts; returns
    (...,) areas under mauve-text's divergence curve (mixtures on a grid of `grid` weights plus the two
    extreme points, exp(-scaling * KL), area as the mean of the two trapezoid orders, as there)."""
    P = np.asarray(p_counts, dtype=float)
    Q = np.asarray(q_counts, dtype=float)
    P = P / P.sum(-1, keepdims=True)
    Q = Q / Q.sum(-1, keepdims=True)
    ws = np.linspace(1e-6, 1 - 1e-6, grid)

    def kl(a, r):  # KL(a || r) with 0 log 0 = 0 (r > 0 wherever a > 0 for an interior mixture)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / r), 0.0).sum(-1)

    ones, zeros = np.ones(P.shape[:-1]), np.zeros(P.shape[:-1])
    xs, ys = [ones], [zeros]  # the extreme point [0, inf] after exp(-c .)
    for w in ws:
        r = w * P + (1 - w) * Q
        xs.append(np.exp(-scaling * kl(Q, r)))
        ys.append(np.exp(-scaling * kl(P, r)))
    xs.append(zeros)  # and [inf, 0]
    ys.append(ones)
    x, y = np.stack(xs, -1), np.stack(ys, -1)

    def area(a, b):  # compute_area_under_curve over points sorted by a, starting from a = 0
        o = np.argsort(a, -1)  # the default kind, as mauve-text sorts (ties decide the area at P = Q)
        a, b = np.take_along_axis(a, o, -1), np.take_along_axis(b, o, -1)
        return (np.diff(a, axis=-1) * (b[..., 1:] + b[..., :-1]) / 2).sum(-1)

    return 0.5 * (area(x, y) + area(y, x))


def mauve_score(p: np.ndarray, q: np.ndarray, num_buckets: int | str = "auto", seed: int = 25) -> float:
    """mauve-text's compute_mauve on precomputed features (no model, no download)."""
    import mauve

    return float(mauve.compute_mauve(p_features=p, q_features=q, num_buckets=num_buckets, seed=seed,
                                     verbose=False).mauve)


def coherence(prompt_emb: np.ndarray, cont_emb: np.ndarray) -> np.ndarray:
    """Per pair, the cosine between a prompt's and its continuation's sentence embeddings (the Contrastive
    Decoding protocol's coherence, there with SimCSE; rows pair up)."""
    a = np.asarray(prompt_emb, dtype=float)
    b = np.asarray(cont_emb, dtype=float)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return (a * b).sum(-1)
