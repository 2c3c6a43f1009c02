"""Chapter 04's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from prodlab import exercises, metrics


def fid_sqrtm(mu_a, cov_a, mu_b, cov_b):
    return ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b))


def mmd2(x, y, biased=False, power=3):
    m, n, d = len(x), len(y), x.shape[1]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** power for a, b in ((x, x), (y, y), (x, y)))
    if biased:
        return float(k_xx.mean() + k_yy.mean() - 2 * k_xy.mean())
    return float((k_xx.sum() - k_xx.trace()) / (m * (m - 1)) + (k_yy.sum() - k_yy.trace()) / (n * (n - 1))
                 - 2 * k_xy.mean())


def pr(real, fake, k, index=None):
    index = k if index is None else index

    def covered(queries, points):
        radii = torch.cdist(points, points).sort(dim=1).values[:, index]
        return float((torch.cdist(queries, points) <= radii[None, :]).any(1).double().mean())

    return covered(fake, real), covered(real, fake)


def dc(real, fake, k, index=None, per_sample=False):
    radii = torch.cdist(real, real).sort(dim=1).values[:, k if index is None else index]
    inside = torch.cdist(fake, real) <= radii[None, :]
    return float(inside.double().sum() / (k * len(fake))), float(inside.any(1 if per_sample else 0).double().mean())


CASES = {
    exercises.check_gaussian_fid: (
        fid_sqrtm,
        [(lambda ma, ca, mb, cb: np.sqrt(metrics.frechet_distance(ma, ca, mb, cb)), "square"),
         (lambda ma, ca, mb, cb: ((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * ca @ cb), "square root"),
         (lambda ma, ca, mb, cb: 1.0, "wrong values")],
    ),
    exercises.check_kid: (
        mmd2,
        [(lambda x, y: mmd2(x, y, biased=True), "biased"), (lambda x, y: mmd2(x, y, power=2), "cubic")],
    ),
    exercises.check_precision_recall: (
        pr,
        [(lambda r, f, k: pr(r, f, k)[::-1], "swapped"), (lambda r, f, k: pr(r, f, k, k - 1), "itself"),
         (lambda r, f, k: (0.5, 0.5), "wrong values")],
    ),
    exercises.check_density_coverage: (
        dc,
        [(lambda r, f, k: dc(r, f, k, per_sample=True), "coverage"), (lambda r, f, k: dc(r, f, k, k - 1), "itself"),
         (lambda r, f, k: (1.0, 1.0), "wrong values")],
    ),
}
