"""Bootstrap intervals of the sample metrics (issue 27): every replicate is the metrics of ``prodlab.metrics`` under
resampling weights, so all weights 1 must give those metrics exactly, and the intervals must be as wide as the
known sampling noise of the metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prodlab import bootstrap, metrics


def _sets(n_real: int = 900, n_fake: int = 700, dim: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n_real, dim, generator=g)
    return real, torch.randn(n_fake, dim, generator=g) * 1.2 + 0.2, torch.rand(n_fake, generator=g) < 0.7


def _ones(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.float64)


def test_weights_of_one_give_the_metrics_of_the_sets():
    real, fake, hits = _sets()
    p = bootstrap.prepare(real, fake, hits=hits)
    measured = p.averages(_ones(len(real)), _ones(len(fake)))
    assert p.fid(_ones(len(real)), _ones(len(fake))) == pytest.approx(metrics.fid(real, fake), rel=1e-9)
    assert (measured["precision"], measured["recall"]) == pytest.approx(metrics.precision_recall(real, fake, 3))
    assert (measured["density"], measured["coverage"]) == pytest.approx(metrics.density_coverage(real, fake, 5))
    assert measured["class_fidelity"] == pytest.approx(float(hits.double().mean()))


def test_weighted_moments_equal_the_moments_of_the_repeated_rows():
    feats = np.random.default_rng(0).normal(size=(50, 4))
    w = bootstrap.weights(50, torch.Generator().manual_seed(1)).numpy()
    assert w.sum() == 50 and (w == 0).any() and (w > 1).any()  # a resample: some rows twice, some never
    repeated = np.repeat(feats, w.astype(int), axis=0)
    mean, cov = bootstrap.weighted_moments(feats, w)
    assert np.allclose(mean, repeated.mean(0)) and np.allclose(cov, np.cov(repeated, rowvar=False))


def test_the_cholesky_route_of_the_frechet_distance_equals_the_general_one():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    roots = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum()
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * roots
    assert metrics.frechet_distance(a.mean(0), cov_a, b.mean(0), cov_b) == pytest.approx(want, rel=1e-9)
    singular = np.diag([1.0, 0.0, 2.0, 1.0, 1.0, 1.0])  # no Cholesky factor: the general route
    assert metrics.frechet_distance(np.zeros(6), singular, np.zeros(6), singular) == pytest.approx(0.0, abs=1e-9)


def test_intervals_are_seeded_hold_the_measured_value_and_have_the_binomial_width():
    real, fake, hits = _sets(1500, 1200)
    p = bootstrap.prepare(real, fake, hits=hits)
    ci = bootstrap.intervals(p, replicates=300, seed=0)
    assert ci == bootstrap.intervals(p, replicates=300, seed=0) and ci != bootstrap.intervals(p, 300, seed=1)
    measured = {"fid": p.fid(_ones(1500), _ones(1200)), **p.averages(_ones(1500), _ones(1200))}
    assert all(low < measured[k] < high for k, (low, high) in ci.items())
    for key, share, n in (("precision", measured["precision"], 1200), ("recall", measured["recall"], 1500),
                          ("class_fidelity", measured["class_fidelity"], 1200)):
        width = ci[key][1] - ci[key][0]  # a share of n independent points: 2 x 1.96 binomial standard deviations
        assert width == pytest.approx(2 * 1.96 * math.sqrt(share * (1 - share) / n), rel=0.25), key


def test_more_samples_give_narrower_intervals_and_separation_needs_a_gap():
    small, large = (bootstrap.intervals(bootstrap.prepare(*_sets(n, n)[:2]), replicates=100) for n in (300, 1200))
    for key in ("fid", "precision", "recall", "density", "coverage"):
        assert large[key][1] - large[key][0] < 0.75 * (small[key][1] - small[key][0]), key
    assert bootstrap.separated([1.0, 2.0], [2.5, 3.0]) and bootstrap.separated([2.5, 3.0], [1.0, 2.0])
    assert not bootstrap.separated([1.0, 2.6], [2.5, 3.0])


def test_the_paired_interval_agrees_with_scipy_and_cancels_what_both_methods_share():
    from scipy import stats

    g = torch.Generator().manual_seed(3)
    shared = torch.randn(400, generator=g) * 5  # how hard each image is, for both methods alike
    a, b = shared + 0.3 + 0.5 * torch.randn(400, generator=g), shared + 0.5 * torch.randn(400, generator=g)
    low, high = bootstrap.paired_interval(a - b, replicates=2000, seed=0)
    ref = stats.bootstrap(((a - b).numpy(),), np.mean, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.02) and high == pytest.approx(ref.high, abs=0.02)
    assert 0 < low < 0.3 < high  # the 0.3 lead is found; unpaired, the shared spread (5) would swamp it
    assert bootstrap.paired_interval(a - b, 200, seed=0) == bootstrap.paired_interval(a - b, 200, seed=0)
    assert bootstrap.paired_interval(torch.full((50,), 2.0)) == pytest.approx((2.0, 2.0))
