"""Plot helpers. Each takes data, draws one figure and returns it closed.

Closed means pyplot no longer tracks it: a notebook shows it once as the cell's value (an open figure
would show twice), and the figure catalogue saves it. No helper loads data or trains anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

CMAP = "gray"  # Fashion-MNIST polarity: product bright on black
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width, height), layout="constrained")


def _done(fig: Figure) -> Figure:
    plt.close(fig)
    return fig


def _as_numpy(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """N x 28 x 28 or N x 1 x 28 x 28, uint8 or float in [0, 1] -> float N x 28 x 28."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4:
        arr = arr[:, 0]
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)


def image_grid(
    images: torch.Tensor | np.ndarray,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell: float = 1.0,
) -> Figure:
    """A grid of product images (row-major), optionally titled per image."""
    arr = _as_numpy(images)
    nrows = max(1, -(-len(arr) // ncols))
    fig = _figure(ncols * cell, nrows * cell * (1.2 if titles else 1.0) + (0.4 if suptitle else 0.0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i < len(arr):
            _show(ax, arr[i], titles[i] if titles else None)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return _done(fig)


def labelled_rows(
    rows: Sequence[torch.Tensor | np.ndarray], row_labels: Sequence[str], suptitle: str | None = None,
    cell: float = 0.9,
) -> Figure:
    """One row of images per label (e.g. one row per product class), the label written left of the row."""
    arrays = [_as_numpy(r) for r in rows]
    ncols = max(len(a) for a in arrays)
    fig = _figure(ncols * cell + 1.3, len(arrays) * cell + (0.4 if suptitle else 0.0))
    axes = np.atleast_2d(fig.subplots(len(arrays), ncols))
    for r, (arr, label) in enumerate(zip(arrays, row_labels, strict=True)):
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(arr):
                _show(ax, arr[c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return _done(fig)


def class_balance(counts: Mapping[str, Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Grouped bar chart of images per class, one group per split."""
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        bars = ax.bar(x + (i - (len(counts) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_ylim(0, 1.25 * max(max(v) for v in counts.values()))
    ax.set_title("Images per class")
    ax.legend(frameon=False, ncols=len(counts), loc="upper right")
    return _done(fig)


def bar_chart(values: Sequence[float], labels: Sequence[str], ylabel: str, title: str) -> Figure:
    """One bar per label, its value written on top."""
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    bars = ax.bar(range(len(values)), values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=1)
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.2 * max(values))
    ax.set_title(title)
    return _done(fig)


def augmentation_table(
    originals: torch.Tensor, steps: Mapping[str, torch.Tensor], suptitle: str | None = None
) -> Figure:
    """Rows = transforms (first row the originals), columns = the same products."""
    rows = [originals, *steps.values()]
    return labelled_rows(rows, ["original", *steps.keys()], suptitle=suptitle, cell=1.0)


def pixel_histograms(before: torch.Tensor, after: torch.Tensor, before_label: str, after_label: str) -> Figure:
    """Histograms of pixel values before and after a preprocessing step (§3.3 step 1)."""
    fig = _figure(8, 2.8)
    axes = fig.subplots(1, 2)
    for ax, data, label in zip(axes, (before, after), (before_label, after_label), strict=True):
        ax.hist(data.flatten().numpy(), bins=50, color="#4c72b0", log=True)
        ax.set_title(label)
        ax.set_xlabel("pixel value")
    axes[0].set_ylabel("pixels (log scale)")
    return _done(fig)
