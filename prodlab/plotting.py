"""Plot helpers. Each takes data, draws one figure and returns it closed.

Closed means pyplot no longer tracks it: a notebook shows it once as the cell's value (an open figure
would show twice), and the figure catalogue saves it. No helper loads data or trains anything.
Image helpers take any batch ``prodlab.data.as_batch`` accepts (uint8 N x H x W x C as stored, float N x C x H x W in
[0, 1] as models output) and draw one-channel images grey, three-channel images in colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import data

CMAP = "gray"  # one-channel images (Fashion-MNIST polarity: product bright on black); three channels: their colours
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def new_figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width, height), layout="constrained")


def finish(fig: Figure) -> Figure:
    plt.close(fig)
    return fig


def as_numpy(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any image batch ``data.as_batch`` accepts (uint8 N x H x W x C, uint8 N x H x W, float N x C x H x W, one
    float image C x H x W) -> what matplotlib draws: float32 N x H x W for one channel (drawn grey), N x H x W x 3
    for three (drawn in colour), in [0, 1]. Floats are clipped to [0, 1] first, as ``imshow`` would."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.tensor(np.asarray(images))
    if x.is_floating_point():
        x = x.clamp(0.0, 1.0)
    x = data.as_batch(x)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"can draw one-channel (grey) or three-channel (colour) images, not {x.shape[1]} channels")
    arr = x.permute(0, 2, 3, 1).numpy().astype(np.float32)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def show_image(ax, image: np.ndarray, title: str | None = None) -> None:
    """Draw one image of :func:`as_numpy` (H x W: grey, H x W x 3: colour) without ticks or frame."""
    ax.imshow(image, cmap=CMAP if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)


def mosaic(images: torch.Tensor | np.ndarray, nrows: int, ncols: int) -> np.ndarray:
    """``nrows * ncols`` images (row-major) as one picture for ``imshow``: (nrows H) x (ncols W), x 3 in colour."""
    arr = as_numpy(images)
    h, w = arr.shape[1:3]
    tiles = arr.reshape(nrows, ncols, h, w, *arr.shape[3:])
    return tiles.swapaxes(1, 2).reshape(nrows * h, ncols * w, *arr.shape[3:])


def image_grid(
    images: torch.Tensor | np.ndarray,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell: float = 1.0,
) -> Figure:
    """A grid of product images (row-major), optionally titled per image."""
    arr = as_numpy(images)
    nrows = max(1, -(-len(arr) // ncols))
    fig = new_figure(ncols * cell, nrows * cell * (1.2 if titles else 1.0) + (0.4 if suptitle else 0.0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i < len(arr):
            show_image(ax, arr[i], titles[i] if titles else None)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return finish(fig)


def labelled_rows(
    rows: Sequence[torch.Tensor | np.ndarray], row_labels: Sequence[str], suptitle: str | None = None,
    cell: float = 0.9, col_titles: Sequence[str] | None = None, label_width: float = 1.3,
) -> Figure:
    """One row of images per label (e.g. one row per product class), the label written left of the row;
    ``col_titles`` (optional) above the first row."""
    arrays = [as_numpy(r) for r in rows]
    ncols = max(len(a) for a in arrays)
    fig = new_figure(ncols * cell + label_width,
                  len(arrays) * cell + (0.4 if suptitle else 0.0) + (0.3 if col_titles else 0.0))
    axes = np.atleast_2d(fig.subplots(len(arrays), ncols))
    for r, (arr, label) in enumerate(zip(arrays, row_labels, strict=True)):
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(arr):
                show_image(ax, arr[c], col_titles[c] if col_titles and r == 0 else None)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return finish(fig)


def latent_scatter(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Points in a 2-D latent space, coloured by product class, with a legend."""
    fig = new_figure(7.2, 5.6)
    ax = fig.subplots()
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        pts = z[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color=cmap(c), label=name, rasterized=True)
    ax.set_xlabel("$\\mu_1(x)$")
    ax.set_ylabel("$\\mu_2(x)$")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, markerscale=4, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return finish(fig)


def class_shares(shares: Mapping[str, Sequence[float]], class_names: Sequence[str], title: str) -> Figure:
    """Grouped bars: share of samples predicted as each class, one group per sample set; dashed line = uniform."""
    fig = new_figure(8.5, 3.2)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    width = 0.8 / len(shares)
    for i, (name, values) in enumerate(shares.items()):
        ax.bar(x + (i - (len(shares) - 1) / 2) * width, values, width, label=name)
    uniform = 1.0 / len(class_names)
    ax.axhline(uniform, color="black", ls="--", lw=1, label=f"uniform ({100 * uniform:.0f} %)")
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel("share of samples")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return finish(fig)


def bar_chart(values: Sequence[float], labels: Sequence[str], ylabel: str, title: str) -> Figure:
    """One bar per label, its value written on top."""
    fig = new_figure(8, 3.2)
    ax = fig.subplots()
    bars = ax.bar(range(len(values)), values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=1)
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.2 * max(values))
    ax.set_title(title)
    return finish(fig)
