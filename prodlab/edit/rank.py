"""Do the editing winners hold under other rulers? (chapter 05, issue 27)

The tables of ``edit.evaluate`` rank the methods by PSNR, a distance between pixels. A shop cares whether the
restored product still *looks like* the product, which a feature space reads better than pixels, and a ranking
read by one ruler only may be that ruler's opinion (chapter 04). So every setting (a noise and its strength, the
super-resolution, each mask) is ranked three times, on the same images:

* by PSNR (higher is better), as the tables;
* by the **feature distance** in each ruler's space (lower is better): ``||f(restored) - f(original)||`` divided by
  the mean distance between two different test products in that space (0: the features are untouched; 1: as far
  apart as two random products), for the classifier (``ruler.load``) and for the self-supervised encoder
  (``ruler.load_second``), which share neither architecture nor training signal.

The winner of each measure is given with its lead over the runner-up and a **paired** bootstrap interval of that
lead (``bootstrap.paired_interval``: the same images resampled for both methods, which is what makes small leads
measurable); a lead holds outside the noise when its interval excludes 0.

Chapter 05 (notebooks/05_editing.ipynb).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from prodlab import bootstrap, ruler

MEASURES = {"psnr": True, "classifier": False, "encoder": False}  # measure -> higher is better


def rulers() -> dict[str, ruler.Ruler]:
    """The two feature spaces of the Fashion-MNIST tables, by the names of :data:`MEASURES`."""
    second = ruler.load_second()
    if second is None:
        raise ruler.NoRuler("the second ruler (encoder) is not shipped: python -m prodlab train encoder")
    return {"classifier": ruler.load(), "encoder": second}


def feature_distance(r: ruler.Ruler, restored: Tensor, original: Tensor) -> Tensor:
    """Per image, ``||f(restored) - f(original)||`` in ``r``'s feature space over the mean distance between two
    different originals (each and the next): 0 is untouched, 1 as far as a random other product."""
    f_orig = r.features(original)
    scale = (f_orig - f_orig.roll(1, 0)).norm(dim=1).mean().clamp_min(1e-12)
    return (r.features(restored) - f_orig).norm(dim=1) / scale


def per_image(outputs: dict[str, Tensor], psnr: dict[str, Tensor], original: Tensor,
              spaces: dict[str, ruler.Ruler]) -> dict[str, dict[str, Tensor]]:
    """``{measure: {method: per-image values}}``: the PSNR given (as the tables compute it) and the feature
    distance of every output in every space of ``spaces``."""
    return {"psnr": psnr, **{name: {m: feature_distance(r, out, original) for m, out in outputs.items()}
                             for name, r in spaces.items()}}


def winner(values: dict[str, Tensor], higher_better: bool, seed: int = 0) -> dict[str, Any]:
    """The best method by the mean of ``values`` (per-image, the same images for every method), the runner-up, the
    lead of the one over the other (positive: better) and its paired 95 % bootstrap interval, and whether that
    interval excludes 0."""
    sign = 1.0 if higher_better else -1.0
    order = sorted(values, key=lambda m: sign * float(values[m].mean()), reverse=True)
    best, second = order[0], order[1]
    lead = sign * (values[best] - values[second])
    low, high = bootstrap.paired_interval(lead, seed=seed)
    return {"best": best, "runner_up": second, "lead": _digits(float(lead.mean())),
            "interval": [_digits(low), _digits(high)], "separated": low > 0}


def _digits(value: float) -> float:
    """Four significant digits: what the tables show, without rounding a small lead or bound to zero."""
    return float(f"{value:.4g}")


def rank_setting(outputs: dict[str, Tensor], psnr: dict[str, Tensor], original: Tensor,
                 spaces: dict[str, ruler.Ruler], seed: int = 0) -> dict[str, Any]:
    """One setting ranked by every measure of :data:`MEASURES`, and whether the PSNR winner wins in both feature
    spaces too (``agree``)."""
    scores = per_image(outputs, psnr, original, spaces)
    rows = {name: winner(scores[name], MEASURES[name], seed) for name in MEASURES}
    return {**rows, "agree": len({row["best"] for row in rows.values()}) == 1}


def markdown(rankings: dict[str, dict[str, Any]]) -> str:
    """The rankings of every setting as a Markdown table: per measure the winner, its lead and interval (bold when
    the interval excludes 0), and whether all three measures name the same winner."""
    def cell(row: dict[str, Any]) -> str:
        lead = f"{row['lead']:+.3g} [{row['interval'][0]:+.3g}, {row['interval'][1]:+.3g}]"
        return f"{row['best'].replace('_', ' ')}, " + (f"**{lead}**" if row["separated"] else lead)

    lines = ["| setting | PSNR (dB) | classifier space | encoder space | same winner |", "|---|---|---|---|---|"]
    for setting, row in rankings.items():
        lines.append(f"| {setting} | " + " | ".join(cell(row[m]) for m in MEASURES)
                     + f" | {'yes' if row['agree'] else 'no'} |")
    return "\n".join(lines)
