"""How to measure a generator (article §4): metrics in the feature space of the shipped product classifier.

The article shows generated products and judges them by eye; it reports no number. A number is what lets two
models, two seeds or two training runs be compared honestly, so notebook 04 builds one ruler and checks it.

The ruler is ``data/checkpoints/classifier`` (``prodlab.models.classifier``): every metric compares sets of its
256-dimensional penultimate-layer features, the in-domain replacement for the Inception-v3 features of the
original FID/KID papers (Inception was trained on ImageNet photos, not 28 x 28 grey products, and would need a
download). Values are therefore comparable only between runs that use the same classifier checkpoint: the
cache key of the reference features is its SHA-256.

Input convention everywhere: any image batch ``prodlab.data.as_batch`` accepts (float N x C x H x W in [0, 1], or
uint8 N x H x W x C). Generators that output [-1, 1] use ``data.denormalize`` first.

Summary (direction, floor, noise), details in each docstring:

=================  ============  ============================================================================
metric             better        floor / noise
=================  ============  ============================================================================
FID                lower         train vs test: 0.13 at N = 10,000, 0.42 at 2,000, 1.46 at 500 (biased in 1/N)
KID (mean, std)    lower         unbiased: about 0 (|KID| < 0.001) for real vs real, whatever N
precision          higher        <= 1; train vs test 0.86 with k = 3 (not 1: the k-NN manifold is patchy)
recall             higher        <= 1; train vs test 0.85
class fidelity     higher        samples like real images score about the classifier's test accuracy (0.93)
classes covered    higher (=10)  coverage TV distance to uniform: lower; real images 0.008 at N = 10,000
copy rate          lower         about ``quantile`` (5 %) for fresh images; near 1 for copies of training images
=================  ============  ============================================================================
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from prodlab import data

# ---------------------------------------------------------------- distribution metrics on features


class _Precomputed(nn.Module):
    """Lets torchmetrics' FID accept features we already extracted: its "feature extractor" is the identity."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    r"""Squared Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017), via torchmetrics.

    :math:`\mathrm{FID} = \lVert\mu_r-\mu_g\rVert^2 + \operatorname{tr}(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2})`.

    Lower is better; 0 only for identical means and covariances. It is biased upwards for finite samples (the
    covariance estimates are noisy), so values are comparable only at the same N: two independent samples of
    the same distribution give a positive floor that shrinks like 1/N: 10,000 training images against the
    10,000 test images give 0.13 (std 0.007 between draws), 2,000 give 0.42, 500 give 1.46 (in the feature
    space of the shipped classifier). Needs N >= 2 on both sides (N > 256 for a full-rank covariance).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    # Imported here, not at the top: torchmetrics (and the torchvision it loads) take seconds to import.
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return max(float(metric.compute()), 0.0)


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    r"""The *squared* Fréchet (2-Wasserstein) distance between two Gaussians, in closed form (float64).

    :math:`\lVert\mu_a-\mu_b\rVert^2 + \operatorname{tr}\Sigma_a + \operatorname{tr}\Sigma_b
    - 2\operatorname{tr}(\Sigma_a\Sigma_b)^{1/2}`: FID is this for Gaussians fitted to two feature sets. The
    trace of the matrix square root is the sum of the square roots of the eigenvalues of
    :math:`\Sigma_a\Sigma_b` (real and >= 0 for covariances; rounding noise below 0 is clipped), the same
    number as ``trace(scipy.linalg.sqrtm(cov_a @ cov_b))``. With :math:`\Sigma_a = LL^T` (Cholesky) they are those of
    the symmetric :math:`L^T\Sigma_b L`, 18 times faster (``prodlab.bootstrap``); a singular one takes the long way.

    Chapter 04 (notebooks/04_evaluation.ipynb), exercise 04.1.
    """
    mu_a, mu_b, cov_a, cov_b = (np.asarray(v, dtype=np.float64) for v in (mu_a, mu_b, cov_a, cov_b))
    try:
        eigenvalues = np.linalg.eigvalsh((low := np.linalg.cholesky(cov_a)).T @ cov_b @ low).clip(min=0.0)
    except np.linalg.LinAlgError:
        eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0.0)
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.sqrt(eigenvalues).sum())


def poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Cubic polynomial kernel matrix :math:`k(a, b) = (a^\top b / d + 1)^3` of KID, in float64.

    The dot products run in the inputs' precision (float32 features: a fast matrix product; the rounding,
    about 1e-7 relative, is far below KID's noise); the cube and every sum are float64.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return ((x @ y.T).double() / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, within_x: torch.Tensor | None = None) -> float:
    r"""Unbiased estimate of MMD² between two samples with the cubic kernel (sizes m and n may differ).

    :math:`\frac{1}{m(m-1)}\sum_{i\ne j}k(x_i,x_j) + \frac{1}{n(n-1)}\sum_{i\ne j}k(y_i,y_j)
    - \frac{2}{mn}\sum_{i,j}k(x_i,y_j)`; the diagonals (a point with itself) are left out, which removes the bias.
    Tested against torchmetrics' ``poly_mmd`` and a hand-written double loop. ``within_x``: the first term, if
    already known (:func:`kid` keeps it for the reference's subsets).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return float((_within(x) if within_x is None else within_x) + _within(y) - 2 * poly_kernel(x, y).mean())


def _within(x: torch.Tensor) -> torch.Tensor:
    """The mean kernel value between distinct points of one sample: a term of :func:`mmd2_unbiased`."""
    k = poly_kernel(x, x)
    return (k.sum() - k.diagonal().sum()) / (len(x) * (len(x) - 1))


# kid()'s terms of the real features' subsets, the same in every call with the same real tensor, seed and sizes:
# each generator is measured against the one reference (chapter 04's sweeps: 17 times). The last ones are kept.
_REAL_TERMS: dict[str, Any] = {"real": lambda: None, "key": None, "terms": []}


def kid(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    r"""Kernel Inception Distance (Bińkowski et al. 2018): mean and std of the unbiased MMD² over random subsets.

    Each of ``subsets`` draws takes ``subset_size`` features from each set (without replacement; the size is
    capped at the smaller set) and computes :func:`mmd2_unbiased`, as torchmetrics'
    ``KernelInceptionDistance`` does. Lower is better. Unbiased: its expectation is 0 when both sets come from
    one distribution, at any N, so small negative values occur: 10,000 training images against the test set
    give -0.0001 to 0.0000 (std 0.0002 between draws), against 0.014 for a blur of half a pixel. ``std`` is
    the spread over subsets (about 0.001 there): the noise of one subset's estimate, not of the mean, which
    varies less (the std between draws above). The subsets come from a ``torch.Generator`` seeded with ``seed``:
    deterministic, unlike torchmetrics' class, which draws from the global random state.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    generator = torch.Generator().manual_seed(seed)
    picks = [(torch.randperm(len(real), generator=generator)[:size],
              torch.randperm(len(fake), generator=generator)[:size]) for _ in range(subsets)]
    key = (seed, subsets, size, len(fake), real._version)  # the real subsets drawn, and the tensor unchanged
    if _REAL_TERMS["real"]() is not real or _REAL_TERMS["key"] != key:
        _REAL_TERMS.update(real=weakref.ref(real), key=key, terms=[_within(real[r]) for r, _ in picks])
    values = [mmd2_unbiased(real[r], fake[f], within_real)
              for within_real, (r, f) in zip(_REAL_TERMS["terms"], picks, strict=True)]
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std(unbiased=False))


def _pairwise_min(
    queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor | None = None, chunk: int = 1000
) -> torch.Tensor:
    """For each query: min over points of distance (``radii`` None) or of distance - radius."""
    out = []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], points)
        out.append((d if radii is None else d - radii[None, :]).min(1).values)
    return torch.cat(out)


def knn_radii(feats: torch.Tensor, k: int = 3, chunk: int = 1000) -> torch.Tensor:
    """Distance of each feature vector to its k-th nearest neighbour in the same set (itself excluded).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    out = []
    for i in range(0, len(feats), chunk):
        d = torch.cdist(feats[i : i + chunk], feats)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, real_radii: torch.Tensor | None = None
) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifold estimates.

    The manifold of a set is the union of balls around its points, each with the radius to its k-th nearest
    neighbour. Precision = share of generated samples inside the real manifold (are the samples realistic?);
    recall = share of real samples inside the generated manifold (is the variety covered?). Both in [0, 1],
    higher is better. They are not 1 for two samples of the same distribution (the balls leave gaps): 10,000
    training images against the test set give precision 0.85 and recall 0.85, with a std of 0.002 and 0.003
    between draws. Exact duplicates get radius 0, so a set of repeated images has recall 0; heavily damaged
    images still reach a precision of about 0.4 (the balls of outlying real images are large).
    Cost O(N²) distances, done in chunks; ``real_radii`` (``knn_radii(real, k)``) may be passed precomputed.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    inside, covered = precision_recall_points(real, fake, k, real_radii)
    return float(inside.double().mean()), float(covered.double().mean())


def precision_recall_points(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, real_radii: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What precision and recall average: per generated point, whether it lies in the real manifold (bool M); per
    real point, whether it lies in the generated one (bool N). ``prodlab.bootstrap`` resamples them. Chapter 04."""
    real, fake = real.float(), fake.float()
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    return _pairwise_min(fake, real, real_radii) <= 0, _pairwise_min(real, fake, knn_radii(fake, k)) <= 0


def density_coverage(
    real: torch.Tensor, fake: torch.Tensor, k: int = 5, real_radii: torch.Tensor | None = None, chunk: int = 1000
) -> tuple[float, float]:
    r"""Density and coverage (Naeem et al. 2020), precision and recall mended against outliers, on real balls only.

    Each real feature ``x_i`` gets the ball of radius ``r_i``, its distance to its k-th nearest real neighbour.
    Density = :math:`\frac{1}{kM}\sum_j \sum_i 1[\lVert y_j - x_i \rVert \le r_i]`: how many real balls a
    sample falls in, on average, over k (about 1 for samples like the real ones; above 1 when they crowd where
    the real ones are dense; an outlying real image's large ball no longer lets garbage score, as it does for
    precision). Coverage = the share of real balls with at least one sample in them: which parts of the real
    manifold the samples reach (recall without the fake balls, which outliers inflate). ``real_radii``
    (``knn_radii(real, k)``) may be passed precomputed. Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    counts, covered = density_coverage_points(real, fake, k, real_radii, chunk)
    return float(counts.double().sum()) / (k * len(fake)), float(covered.double().mean())


def density_coverage_points(
    real: torch.Tensor, fake: torch.Tensor, k: int = 5, real_radii: torch.Tensor | None = None, chunk: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """What density and coverage average: per generated point, the number of real balls it lies in (int64 M); per
    real ball, whether some generated point lies in it (bool N). ``prodlab.bootstrap`` resamples them. Chapter 04."""
    real, fake = real.float(), fake.float()
    radii = knn_radii(real, k) if real_radii is None else real_radii
    counts, nearest = [], torch.full((len(real),), float("inf"))
    for i in range(0, len(fake), chunk):
        gap = torch.cdist(fake[i : i + chunk], real) - radii[None, :]  # <= 0: inside the real ball
        counts.append((gap <= 0).sum(1))
        nearest = torch.minimum(nearest, gap.min(0).values)
    return torch.cat(counts), nearest <= 0


# ---------------------------------------------------------------- class-level metrics


def class_fidelity(predicted: torch.Tensor, requested: torch.Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """Share of class-conditional samples that the classifier assigns to the requested class; higher is better.

    Samples indistinguishable from real images score about the classifier's accuracy on real test images
    (0.93), not 1: shirts and pullovers are confused even on real data. A score above that means unusually
    easy, prototypical samples, not better ones. Noise: binomial, about ±0.003 at N = 10,000.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    hit = (predicted == requested).double()
    per_class = {name: round(float(hit[requested == c].mean()), 4)
                 for c, name in enumerate(class_names) if (requested == c).any()}
    return {"class_fidelity": float(hit.mean()), "class_fidelity_per_class": per_class}


def class_coverage(predicted: torch.Tensor, n_classes: int, min_share: float = 0.02) -> dict[str, Any]:
    """Histogram of predicted classes of unconditional samples compared with the uniform distribution.

    Fashion-MNIST is balanced, so a generator that covers every mode should produce each of its ten classes about
    10 % of the time. ``coverage_tv`` = total variation distance to uniform (0 = perfectly balanced, 0.9 = one class
    only; lower is better), ``coverage_kl`` = KL(p || uniform) in nats (0 .. log 10 = 2.30; lower is better),
    ``classes_covered`` = classes with at least ``min_share`` of the samples (10 is best). 10,000 real
    training images give TV 0.008 (the classifier's errors are not balanced), 2,000 give about 0.03: sampling
    noise, so compare at equal N.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    counts = torch.bincount(predicted, minlength=n_classes).double()
    p = counts / counts.sum()
    nonzero = p > 0
    return {
        "class_share": [round(float(v), 4) for v in p],
        "coverage_tv": float(0.5 * (p - 1 / n_classes).abs().sum()),
        "coverage_kl": float((p[nonzero] * (p[nonzero] * n_classes).log()).sum()),
        "classes_covered": int((p >= min_share).sum()),
    }


# ---------------------------------------------------------------- memorisation


def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """Euclidean distance (pixels in [0, 1], C x H x W dimensions) from each query image to its nearest reference.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    q = data.as_batch(queries).flatten(1)
    ref = data.as_batch(reference).flatten(1)
    return _pairwise_min(q, ref, chunk=chunk)


@lru_cache(maxsize=2)
def _heldout_distances(n_heldout: int, dataset: str) -> torch.Tensor:
    """Nearest-training-image distances of the first ``n_heldout`` test images (the memorisation yardstick)."""
    return nearest_distances(data.load("test", dataset=dataset)[0][:n_heldout], data.load("train", dataset=dataset)[0])


def memorisation(
    samples: torch.Tensor, train: torch.Tensor | None = None, heldout: torch.Tensor | None = None,
    quantile: float = 0.05, n_heldout: int = 1000, dataset: str = data.DEFAULT,
) -> dict[str, float]:
    """Does a generator copy its training images? Compare nearest-training-image distances (pixel space).

    For each sample, the distance to its nearest training image; as the yardstick, the same for ``n_heldout``
    test images, which the model never saw (Fashion-MNIST has near-duplicates, so those are small too).
    ``copy_rate`` = share of samples closer to the training set than the ``quantile`` of the held-out distances:
    about ``quantile`` for a model that makes new images, near 1 for a model that returns training images
    (lower is better). ``distance_ratio`` = median sample distance / median held-out distance (about 1 or more
    is healthy, well below 1 means memorisation). Pixel space, not features: a copy is a copy of pixels.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    if train is None and heldout is None:
        d_heldout = _heldout_distances(n_heldout, dataset)
    else:
        heldout = data.load("test", dataset=dataset)[0][:n_heldout] if heldout is None else heldout
        d_heldout = nearest_distances(heldout, data.load("train", dataset=dataset)[0] if train is None else train)
    d_sample = nearest_distances(samples, data.load("train", dataset=dataset)[0] if train is None else train)
    threshold = torch.quantile(d_heldout, quantile)
    return {
        "copy_rate": float((d_sample < threshold).double().mean()),
        "distance_ratio": float(d_sample.median() / d_heldout.median()),
        "median_distance": float(d_sample.median()),
        "median_heldout_distance": float(d_heldout.median()),
        "threshold": float(threshold),
    }


# ---------------------------------------------------------------- sharpness and VAE likelihoods (notebook 03)

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_variance(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-image variance of the 3x3 Laplacian (pixels in [0, 1]): large for sharp edges, small for blurry images.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    x = data.as_batch(images)
    channels = x.shape[1]  # each channel filtered on its own
    kernel = LAPLACIAN.view(1, 1, 3, 3).expand(channels, 1, 3, 3)
    return nn.functional.conv2d(x, kernel, groups=channels).flatten(1).var(dim=1)


def high_frequency_share(images: torch.Tensor | np.ndarray, cutoff: float = 0.25) -> torch.Tensor:
    """Per-image share of the spectral energy (mean removed) above ``cutoff`` cycles/pixel (Nyquist is 0.5).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    x = data.as_batch(images)
    power = torch.fft.fft2(x - x.mean(dim=(2, 3), keepdim=True)).abs().pow(2)  # per channel
    fy, fx = torch.fft.fftfreq(x.shape[-2]), torch.fft.fftfreq(x.shape[-1])
    high = (fy[:, None].pow(2) + fx[None, :].pow(2)).sqrt() > cutoff
    return power[:, :, high].sum(dim=(1, 2)) / power.sum(dim=(1, 2, 3)).clamp_min(1e-12)


def sharpness(images: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Mean Laplacian variance and high-frequency share of a set of images: how blurry a generator's samples are.

    A Gaussian VAE decoder or a Bernoulli decoder outputs the *mean* of p(x|z), an average over every product
    the code z could stand for, so its edges are soft; GAN samples and real photos keep theirs. Compare with the
    same numbers for real test images, and for real images blurred by :func:`blur` as a calibration.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return {"laplacian_variance": float(laplacian_variance(images).mean()),
            "high_frequency_share": float(high_frequency_share(images).mean())}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return "" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], first: str = "model") -> str:
    """A fixed-width text table of report rows: ``first`` left-aligned, then ``columns`` right-aligned.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    grid = [[first, *columns]] + [[_cell(row.get(key)) for key in (first, *columns)] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    return "\n".join("  ".join([line[0].ljust(widths[0]), *(text.rjust(w) for text, w in
                                                          zip(line[1:], widths[1:], strict=True))]) for line in grid)
