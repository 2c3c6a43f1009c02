"""Checking the ruler (chapter 04): degrade real images in known ways and watch every metric respond.

A metric that does not get worse when images are blurred, noised, missing classes or collapsed onto a few
distinct images cannot be trusted to rank generators; :func:`sanity_sweep` and :func:`floor_curve` are the checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from prodlab import data, degrade, metrics, ruler

# ---------------------------------------------------------------- degradations: checking the ruler


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels (``degrade.blur``, kernel 2*ceil(3 sigma)+1) of any accepted images.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return degrade.blur(data.as_batch(images), sigma)


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Gaussian pixel noise of standard deviation ``sigma`` (``degrade.gaussian_noise``) of any accepted images.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return degrade.gaussian_noise(data.as_batch(images), sigma, seed)


def drop_classes(
    images: torch.Tensor, labels: torch.Tensor, k: int, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images drawn (without replacement, seeded) from all classes except the first ``k``: missing modes.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    keep = torch.nonzero(labels >= k).flatten()
    if len(keep) < n:
        raise ValueError(f"only {len(keep)} images remain after dropping {k} classes; asked for {n}")
    pick = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[:n]]
    return images[pick], labels[pick]


def collapse(images: torch.Tensor, n_distinct: int) -> torch.Tensor:
    """Mode collapse: the first ``n_distinct`` images repeated until the set is as large as before.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    reps = -(-len(images) // n_distinct)
    return images[:n_distinct].repeat(reps, *([1] * (images.ndim - 1)))[: len(images)]


SANITY_LEVELS: dict[str, tuple[float, ...]] = {
    "blur": (0.0, 0.5, 1.0, 1.5, 2.0),  # sigma in pixels
    "noise": (0.0, 0.05, 0.1, 0.2, 0.3),  # sigma in pixel units ([0, 1] scale)
    "drop": (0, 1, 2, 4, 6, 8),  # classes removed
    "collapse": (1.0, 0.1, 0.01, 0.001),  # share of distinct images kept
}
SANITY_LABELS = {
    "blur": "blur sigma (pixels)", "noise": "noise sigma", "drop": "classes removed",
    "collapse": "distinct images / N",
}


def real_sample(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` training images (uint8 N x H x W x C), a seeded draw without replacement: what a perfect generator
    would return.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images = data.load("train")[0]
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def degraded(kind: str, level: float, n: int, seed: int = 0) -> torch.Tensor:
    """``real_sample(n, seed)`` degraded by ``kind`` at ``level``: a "generator" with a known defect.

    Level 0 (for ``collapse``: 1.0, all images distinct) leaves the images untouched.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    if kind == "drop":
        images, labels = data.load("train")
        return drop_classes(images, labels, int(level), n, seed)[0]
    x = real_sample(n, seed)
    if kind == "blur":
        return blur(x, level)
    if kind == "noise":
        return add_noise(x, level, seed)
    if kind == "collapse":
        return collapse(x, max(1, round(level * n)))
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(SANITY_LEVELS)}")


def sanity_sweep(
    kind: str, levels: Sequence[float] | None = None, n: int = 10_000, seed: int = 0, r: ruler.Ruler | None = None,
    kid_subsets: int = 50, reports: dict[bytes, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Metrics of ``n`` training images degraded at each level, against the test set (level 0 = the floor).

    ``reports`` keeps the reports made, by the content of the images measured: shared between the sweeps, the
    undegraded level (the same images in every sweep) is measured once.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    r = r or ruler.load()
    reports = {} if reports is None else reports
    rows = []
    for level in SANITY_LEVELS[kind] if levels is None else levels:
        images = data.as_batch(degraded(kind, level, n, seed))  # what generator_report measures, as bytes
        key = hashlib.sha256(images.numpy().tobytes()).digest()
        if key not in reports:
            reports[key] = ruler.generator_report(images, r=r, kid_subsets=kid_subsets, seed=seed)
        rows.append({"level": level, **reports[key]})
    return rows


def floor_curve(
    sizes: Sequence[int] = (500, 1000, 2000, 5000, 10_000), draws: int = 5, r: ruler.Ruler | None = None,
    kid_subsets: int = 50,
) -> list[dict[str, float]]:
    """FID and KID of ``n`` training images vs the whole test set, for several n and independent draws.

    Shows the floor a perfect generator would reach, its noise between draws, and FID's small-sample bias.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    r = r or ruler.load()
    reference, images = r.reference("test"), data.load("train")[0]
    picks = {(n, draw): torch.randperm(len(images), generator=torch.Generator().manual_seed(draw))[:n]
             for n in sizes for draw in range(draws)}
    needed = torch.unique(torch.cat(list(picks.values())))  # features only of the images some draw uses
    position = torch.full((len(images),), -1, dtype=torch.int64)
    position[needed] = torch.arange(len(needed))
    pool = r.features(images[needed])
    rows = []
    for n in sizes:
        for draw in range(draws):
            feats = pool[position[picks[n, draw]]]
            kid_mean, _ = metrics.kid(reference, feats, subsets=kid_subsets, seed=draw)
            rows.append({"n": n, "draw": draw, "fid": metrics.fid(reference, feats), "kid": kid_mean})
    return rows



