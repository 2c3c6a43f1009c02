"""Exercise checkers of chapter 04 (the ruler: FID, KID, precision and recall, §4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from prodlab import metrics
from prodlab.exercises.core import call, verdict


def _gaussians(seed: int = 0, d: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two fixed Gaussians in ``d`` dimensions: means and full (non-commuting) covariance matrices."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T / d + 0.1 * np.eye(d), rng.normal(size=d) + 0.5, b @ b.T / d + 0.1 * np.eye(d)


def check_gaussian_fid(fn: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]) -> None:
    """Exercise 04.1: ``fn(mu_a, cov_a, mu_b, cov_b)`` -> the FID of two Gaussians in closed form, as
    :func:`prodlab.metrics.frechet_distance`."""
    title = "FID of two Gaussians"
    mu_a, cov_a, mu_b, cov_b = _gaussians()
    want = torch.tensor(metrics.frechet_distance(mu_a, cov_a, mu_b, cov_b))
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    root = float(np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum())
    traces = float(np.trace(cov_a) + np.trace(cov_b))
    mistakes = {
        "the square root is missing: the cross term is 2 tr((cov_a cov_b)^(1/2)), a matrix square root "
        "(scipy.linalg.sqrtm), not tr(cov_a cov_b).": torch.tensor(mean_term + traces - 2 * np.trace(cov_a @ cov_b)),
        "the cross term needs its factor 2: tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)).":
            torch.tensor(mean_term + traces - root),
        "that is the Fréchet distance itself: FID is its square (no square root of the total).": want.sqrt(),
        "the mean term is the *squared* distance of the means: ||mu_a - mu_b||^2.":
            torch.tensor(np.sqrt(mean_term) + traces - 2 * root),
    }
    got = call(title, fn, mu_a.copy(), cov_a.copy(), mu_b.copy(), cov_b.copy())
    got = np.real(got) if np.iscomplexobj(got) else got  # scipy's sqrtm may return a complex matrix
    verdict(title, got, want, mistakes,
            "||mu_a - mu_b||^2 + tr(cov_a + cov_b - 2 sqrtm(cov_a @ cov_b)); take the real part of sqrtm.")


def _feature_sets(seed: int = 1) -> tuple[Tensor, Tensor]:
    """Two small feature sets of different sizes and distributions (float64)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(60, 8, generator=gen, dtype=torch.float64)
    y = 1.2 * torch.randn(45, 8, generator=gen, dtype=torch.float64) + 0.3
    return x, y


def check_kid(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Exercise 04.2: ``fn(x, y)`` -> the unbiased MMD² with the cubic kernel ``(a.b / d + 1)^3`` of two feature sets
    (sizes may differ), the number KID averages over subsets, as :func:`prodlab.metrics.mmd2_unbiased`."""
    title = "KID (unbiased MMD²)"
    x, y = _feature_sets()
    want = torch.tensor(metrics.mmd2_unbiased(x, y))
    k_xx, k_yy, k_xy = (metrics.poly_kernel(a, b) for a, b in ((x, x), (y, y), (x, y)))
    linear = [(a @ b.T / x.shape[1] + 1) for a, b in ((x, x), (y, y), (x, y))]

    def unbiased(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> Tensor:
        m, n = len(kxx), len(kyy)
        return ((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                - 2 * kxy.mean())

    mistakes = {
        "biased: leave out the diagonal k(x_i, x_i) and divide by m(m - 1), not m^2.":
            k_xx.mean() + k_yy.mean() - 2 * k_xy.mean(),
        "the kernel is cubic: (a.b / d + 1)^3.": unbiased(*(k ** 2 for k in linear)),
        "divide the dot product by the dimension d before adding 1: (a.b / d + 1)^3.":
            unbiased(*(((a @ b.T) + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))),
        "the cross term counts twice: - 2 mean k(x_i, y_j).": unbiased(k_xx, k_yy, k_xy / 2),
    }
    got = call(title, fn, x.clone(), y.clone())
    verdict(title, got, want, mistakes, "Mean of k within x (off-diagonal) + the same within y - 2 mean across.",
            rtol=1e-7, atol=1e-9)


def _precision_recall(real: Tensor, fake: Tensor, k: int, neighbour: int) -> Tensor:
    """Precision and recall with the radius taken as the ``neighbour``-th smallest distance (0 = the point itself)."""

    def covered(queries: Tensor, points: Tensor) -> Tensor:
        radii = torch.cdist(points, points).sort(dim=1).values[:, neighbour]
        return (torch.cdist(queries, points) <= radii[None, :]).any(1).double().mean()

    return torch.stack([covered(fake, real), covered(real, fake)])


def _clouds(seed: int, sizes: tuple[int, int], scale: float, shift: float) -> tuple[Tensor, Tensor]:
    """A real and a generated 4-d point cloud (float64): N(0, I), and N(shift, scale² I)."""
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(sizes[0], 4, generator=gen, dtype=torch.float64)
    return real, scale * torch.randn(sizes[1], 4, generator=gen, dtype=torch.float64) + shift


def check_precision_recall(fn: Callable[[Tensor, Tensor, int], tuple[float, float]]) -> None:
    """Exercise 04.3: ``fn(real, fake, k)`` -> ``(precision, recall)`` with k-NN radii, as
    :func:`prodlab.metrics.precision_recall`."""
    title = "precision and recall"
    real, fake, k = *_clouds(2, (120, 90), 0.7, 0.6), 3
    want = torch.tensor(metrics.precision_recall(real, fake, k), dtype=torch.float64)
    mistakes = {
        "precision and recall are swapped: precision = share of *fake* points inside the real manifold.": want.flip(0),
        "the radius counts the point itself: the k-th neighbour excludes it (sorted distances, index k, not k - 1).":
            _precision_recall(real, fake, k, k - 1),
        "only one ball per query: a point is inside the manifold when it lies in *any* ball (of its own radius).":
            torch.stack([_covered_nearest(fake, real, k), _covered_nearest(real, fake, k)]),
    }
    got = call(title, fn, real.clone(), fake.clone(), k)
    verdict(title, got, want, mistakes,
            "Radius of each point: distance to its k-th nearest neighbour in its own set; precision: share of fakes "
            "within the radius of some real point; recall: the reverse.")


def _covered_nearest(queries: Tensor, points: Tensor, k: int) -> Tensor:
    """The wrong test "inside the ball of the nearest point only"."""
    radii = torch.cdist(points, points).sort(dim=1).values[:, k]
    d = torch.cdist(queries, points)
    nearest = d.argmin(1)
    return (d.gather(1, nearest[:, None])[:, 0] <= radii[nearest]).double().mean()


def check_density_coverage(fn: Callable[[Tensor, Tensor, int], tuple[float, float]]) -> None:
    """Exercise 04.4: ``fn(real, fake, k)`` -> ``(density, coverage)`` of Naeem et al. (2020) on real k-NN balls
    only, as :func:`prodlab.metrics.density_coverage`."""
    title = "density and coverage"
    real, fake, k = *_clouds(3, (150, 100), 0.6, 0.4), 5
    want = torch.tensor(metrics.density_coverage(real, fake, k), dtype=torch.float64)
    radii = torch.cdist(real, real).sort(dim=1).values[:, k]
    inside = torch.cdist(fake, real) <= radii[None, :]  # M x N: fake j in the ball of real i
    mistakes = {
        "density counts every real ball a sample lies in, divided by k M: not only whether it lies in one.":
            torch.stack([inside.any(1).double().mean() / k, want[1]]),
        "density divides by k (and by M): sum_j sum_i 1[inside] / (k M).":
            torch.stack([inside.double().sum() / len(fake), want[1]]),
        "coverage is the share of *real balls* that hold a sample, not the share of samples in a ball.":
            torch.stack([want[0], inside.any(1).double().mean()]),
        "the radius excludes the point itself: the k-th neighbour is index k of the sorted distances.":
            torch.tensor(metrics.density_coverage(real, fake, k, torch.cdist(real, real).sort(dim=1).values[:, k - 1]),
                         dtype=torch.float64),
    }
    got = call(title, fn, real.clone(), fake.clone(), k)
    verdict(title, got, want, mistakes,
            "Radius r_i: distance from real i to its k-th nearest real neighbour. Density: the number of (sample, "
            "real ball) pairs with the sample inside, over k M. Coverage: the share of real balls with a sample in.")
