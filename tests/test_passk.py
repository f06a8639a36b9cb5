import math

import numpy as np
import pytest

from esamp.metrics import default_ks, mean_accuracy, pass_at_k, passk_curve


def brute(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (64, 1, 16), (200, 17, 100), (5, 2, 3), (16, 15, 2)])
def test_matches_combinatorial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute(n, c, k), rel=1e-12, abs=1e-12)


def test_edge_cases():
    assert pass_at_k(8, 0, 1) == 0.0 and pass_at_k(8, 0, 8) == 0.0   # c = 0
    assert pass_at_k(8, 8, 1) == 1.0                                  # c = n
    assert pass_at_k(8, 5, 4) == 1.0                                  # n - c < k: every k-subset has a hit
    assert pass_at_k(8, 1, 1) == pytest.approx(1 / 8)                 # k = 1 is the accuracy
    assert pass_at_k(8, 1, 8) == 1.0


def test_stable_for_large_n():
    # C(1000, 500) overflows floats; the product form must not.
    v = pass_at_k(1000, 3, 500)
    assert 0.87 < v < 0.88 and v == pytest.approx(1 - (500 * 499 * 498) / (1000 * 999 * 998), rel=1e-9)


@pytest.mark.parametrize("n,c,k", [(0, 0, 1), (4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)])
def test_invalid_inputs_raise(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_curve_and_ks():
    assert default_ks(8) == [1, 2, 4, 8]
    assert default_ks(12) == [1, 2, 4, 8, 12]
    assert default_ks(1) == [1]
    counts = [(4, 0), (4, 1), (4, 4)]
    curve = passk_curve(counts)
    assert curve["k"] == [1, 2, 4]
    assert curve["pass_at_k"][0] == pytest.approx((0 + 0.25 + 1) / 3)
    assert curve["pass_at_k"][2] == pytest.approx(2 / 3)
    # monotone in k
    assert all(a <= b + 1e-12 for a, b in zip(curve["pass_at_k"], curve["pass_at_k"][1:]))
    acc = mean_accuracy(counts)
    assert acc["accuracy"] == pytest.approx(np.mean([0, 0.25, 1]))


def test_interval_exact_in_degenerate_cases():
    # every problem alike: every bootstrap resample has the same mean, so the interval is that one point
    for c, value in ((0, 0.0), (4, 1.0)):
        curve = passk_curve([(4, c)] * 5, ks=[1, 4])
        assert curve["ci_low"] == curve["ci_high"] == [value, value]
    # two problems, Pass@1 0 and 1: a resample's mean is 0, 1/2 or 1 (p = 1/4, 1/2, 1/4), so the 2.5% and
    # 97.5% percentiles of 1000 resamples are exactly 0 and 1
    curve = passk_curve([(4, 0), (4, 4)], ks=[1])
    assert (curve["ci_low"], curve["pass_at_k"], curve["ci_high"]) == ([0.0], [0.5], [1.0])
    acc = mean_accuracy([(4, 0), (4, 4)])
    assert (acc["ci_low"], acc["ci_high"]) == (0.0, 1.0)


def test_interval_covers_the_population_value_about_95_percent():
    """Coverage over repeated simulated benchmarks: problems with success rates p ~ Beta(0.5, 1.5), n = 8
    samples each. The population's mean Pass@k is E[1 - (1 - p)^k] = 1 - B(a, b + k) / B(a, b); a 95%
    interval over 40 problems must contain it in roughly 95% of 600 simulated runs (a percentile bootstrap
    runs a little under: 91-92% here; an interval half as wide covers ~50%, a too-wide one ~100%)."""
    a, b, n, problems, runs = 0.5, 1.5, 8, 40, 600
    rng = np.random.default_rng(123)

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    truth = {k: 1 - math.exp(log_beta(a, b + k) - log_beta(a, b)) for k in (1, 4, 8)}
    hits = {k: 0 for k in truth}
    for run in range(runs):
        p = rng.beta(a, b, size=problems)
        counts = [(n, int(c)) for c in rng.binomial(n, p)]
        curve = passk_curve(counts, ks=list(truth), bootstrap=1000, seed=run)
        for k, lo, hi in zip(curve["k"], curve["ci_low"], curve["ci_high"]):
            hits[k] += lo <= truth[k] <= hi
    coverage = {k: h / runs for k, h in hits.items()}
    assert all(0.88 <= c <= 0.985 for c in coverage.values()), coverage


def test_curve_with_mixed_n_reports_only_covered_k():
    curve = passk_curve([(8, 1), (4, 1)], ks=[1, 2, 4, 8])
    assert curve["problems"] == [2, 2, 2, 1]


def test_evaluate_metric_module_loads_offline_by_path(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    from esamp.metrics import EVALUATE_PASSK_PATH

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    metric = evaluate.load(EVALUATE_PASSK_PATH, cache_dir=str(tmp_path))
    flags = [[True, False, False, False], [False] * 4, [True] * 4]
    out = metric.compute(predictions=flags, references=[""] * 3, k=[1, 2, 4])
    assert out["pass@1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert out["pass@4"] == pytest.approx(2 / 3)
