"""Bootstrap confidence intervals for the sample metrics of ``prodlab.metrics`` (chapter 04, issue 27).

A metric measured once is one draw: another 10,000 samples, or another 10,000 test images, would give another
value. The bootstrap (Efron 1979) estimates that spread from the data at hand: draw the sets again *with
replacement*, recompute, repeat ``B`` times, and read the spread of the replicates. Two models are ranked apart only
when their intervals do not overlap (:func:`separated`).

Each replicate is a set of multinomial **weights** (how often each point was drawn), so it costs little:

* FID resamples both sets: the weighted mean and covariance of each, then the closed-form Fréchet distance
  (``metrics.frechet_distance``; all weights 1 give ``metrics.fid``). A resample holds only about 63 % distinct
  points, and FID's finite-sample bias grows as the sample shrinks, so the replicates sit *above* the measured value
  (by about 0.5 for 1,500 against 1,200 points in 32 dimensions). The interval is therefore the replicates' spread
  around their median, placed around the measured value: how far the value moves from draw to draw at this N. It
  is not an interval for the unbiased FID; compare FIDs at equal N only.
* Precision, density (averages over generated points) resample the generated points; recall, coverage (averages
  over real points) resample the real points; the balls stay those of the full sets. Resampling the balls as well
  would be wrong, not just slow: a resample keeps about 63 % of the distinct balls, so precision would drop for that
  reason alone, and recomputed k-NN radii shrink to 0 around points drawn twice. The intervals are for the variation
  of the averaged set given the other.
* Class fidelity resamples the generated points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prodlab import metrics

REPLICATES = 200  # B
LEVEL = 0.95  # the 2.5 % and 97.5 % quantiles of the replicates


def weights(n: int, generator: torch.Generator) -> torch.Tensor:
    """Multinomial counts (float64 ``n``): how often each of ``n`` points is drawn in ``n`` draws with replacement.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return torch.bincount(torch.randint(0, n, (n,), generator=generator), minlength=n).double()


def weighted_moments(feats: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``feats`` (N x D) with row i counted ``weight[i]`` times (float64).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    n = weight.sum()
    mean = weight @ feats / n
    centred = feats - mean
    return mean, (centred * weight[:, None]).T @ centred / (n - 1)


@dataclass(frozen=True)
class Prepared:
    """What every replicate reads, computed once from two feature sets (:func:`prepare`): the features for FID and
    the per-point quantities that the other metrics average.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """

    real: np.ndarray  # float64 N x D
    fake: np.ndarray  # float64 M x D
    inside: torch.Tensor  # float64 M: the generated point lies in the real manifold (precision)
    covered_by_fake: torch.Tensor  # float64 N: the real point lies in the generated manifold (recall)
    ball_counts: torch.Tensor  # float64 M: real balls of the density k around the generated point, over k (density)
    ball_reached: torch.Tensor  # float64 N: the real ball holds a generated point (coverage)
    hits: torch.Tensor | None  # float64 M: the ruler read the class asked for (class fidelity); None: none asked

    def fid(self, w_real: torch.Tensor, w_fake: torch.Tensor) -> float:
        """FID with row i of each set counted as often as its weight says (all ones: ``metrics.fid``)."""
        return metrics.frechet_distance(*weighted_moments(self.real, w_real.numpy()),
                                        *weighted_moments(self.fake, w_fake.numpy()))

    def measured(self) -> dict[str, float]:
        """The ball metrics (and class fidelity) of the sets as measured: every point once."""
        return self.averages(torch.ones(len(self.real), dtype=torch.float64),
                             torch.ones(len(self.fake), dtype=torch.float64))

    def averages(self, w_real: torch.Tensor, w_fake: torch.Tensor) -> dict[str, float]:
        """Precision, density (and class fidelity) weighted by ``w_fake``, recall and coverage by ``w_real``."""
        m, n = float(w_fake.sum()), float(w_real.sum())
        out = {"precision": float(w_fake @ self.inside) / m, "recall": float(w_real @ self.covered_by_fake) / n,
               "density": float(w_fake @ self.ball_counts) / m, "coverage": float(w_real @ self.ball_reached) / n}
        if self.hits is not None:
            out["class_fidelity"] = float(w_fake @ self.hits) / m
        return out


def prepare(real: torch.Tensor, fake: torch.Tensor, k: int = 3, density_k: int = 5,
            real_radii: torch.Tensor | None = None, density_radii: torch.Tensor | None = None,
            hits: torch.Tensor | None = None) -> Prepared:
    """The per-point quantities of two feature sets (real N x D, generated M x D), radii as ``metrics`` computes
    them (``real_radii``: ``knn_radii(real, k)``, ``density_radii``: of ``density_k``, if precomputed); ``hits``:
    bool per generated point for class fidelity.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    inside, covered = metrics.precision_recall_points(real, fake, k, real_radii)
    counts, reached = metrics.density_coverage_points(real, fake, density_k, density_radii)
    return Prepared(real.double().numpy(), fake.double().numpy(), inside.double(), covered.double(),
                    counts.double() / density_k, reached.double(), None if hits is None else hits.double())


def intervals(prepared: Prepared, replicates: int = REPLICATES, seed: int = 0, level: float = LEVEL
              ) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: the percentile bootstrap interval of each metric from ``replicates`` resamples
    (one seeded generator: the same seed, the same intervals); FID's placed around its measured value (module
    docstring).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    generator = torch.Generator().manual_seed(seed)
    n, m = len(prepared.real), len(prepared.fake)
    measured = {"fid": prepared.fid(torch.ones(n, dtype=torch.float64), torch.ones(m, dtype=torch.float64)),
                **prepared.measured()}
    rows = []
    for _ in range(replicates):
        w_real, w_fake = weights(n, generator), weights(m, generator)
        rows.append({"fid": prepared.fid(w_real, w_fake), **prepared.averages(w_real, w_fake)})
    tail = (1 - level) / 2
    out = {}
    for name, value in measured.items():
        low, mid, high = np.quantile([r[name] for r in rows], [tail, 0.5, 1 - tail])
        out[name] = [value - (mid - low), value + (high - mid)] if name == "fid" else [float(low), float(high)]
    return {name: [float(v) for v in pair] for name, pair in out.items()}


def paired_interval(diff: torch.Tensor, replicates: int = REPLICATES, seed: int = 0, level: float = LEVEL
                    ) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of per-item differences ``diff`` (two methods measured on the
    same items): the items are resampled together, so what both methods share (an easy or a hard image) cancels.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    generator = torch.Generator().manual_seed(seed)
    d = diff.double().flatten()
    means = [float((weights(len(d), generator) * d).sum() / len(d)) for _ in range(replicates)]
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def separated(a: list[float], b: list[float]) -> bool:
    """Whether two intervals ``[low, high]`` do not overlap: a ranking that holds outside the noise.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return a[1] < b[0] or b[1] < a[0]
