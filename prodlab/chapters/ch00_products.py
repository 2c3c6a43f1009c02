"""The products (chapter 00, §1, §3.3 steps 1-2):
the figures of notebooks/00_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import config, data, datasets, plotting
from prodlab.figures import register
from prodlab.plotting import finish, new_figure


def class_balance(counts: Mapping[str, Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Grouped bar chart of images per class, one group per split."""
    fig = new_figure(8, 3.2)
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
    return finish(fig)


def augmentation_table(
    originals: torch.Tensor, steps: Mapping[str, torch.Tensor], suptitle: str | None = None
) -> Figure:
    """Rows = transforms (first row the originals), columns = the same products."""
    rows = [originals, *steps.values()]
    return plotting.labelled_rows(rows, ["original", *steps.keys()], suptitle=suptitle, cell=1.0)


def pixel_histograms(before: torch.Tensor, after: torch.Tensor, before_label: str, after_label: str) -> Figure:
    """Histograms of pixel values before and after a preprocessing step (§3.3 step 1)."""
    fig = new_figure(8, 2.8)
    axes = fig.subplots(1, 2)
    for ax, values, label in zip(axes, (before, after), (before_label, after_label), strict=True):
        ax.hist(values.flatten().numpy(), bins=50, color="#4c72b0", log=True)
        ax.set_title(label)
        ax.set_xlabel("pixel value")
    axes[0].set_ylabel("pixels (log scale)")
    return finish(fig)





SHOWCASE_SEED = 0  # which products the data figures show


@register("data-samples", "Samples of every product class", "§1, §3.3 step 1", "00_products",
          "Eight training images of each class, drawn with a fixed seed.")
def data_samples() -> Figure:
    images, labels = data.load("train")
    names = data.spec().class_names
    gen = torch.Generator().manual_seed(SHOWCASE_SEED)
    rows = []
    for c in range(len(names)):
        idx = torch.nonzero(labels == c).flatten()
        rows.append(images[idx[torch.randperm(len(idx), generator=gen)[:8]]])
    return plotting.labelled_rows(rows, names, suptitle="Fashion-MNIST: 8 products per class")


@register("data-class-means", "Per-class mean images", "§3.3 step 1", "00_products",
          "Pixel-wise mean of all 6,000 training images of each class.")
def data_class_means() -> Figure:
    spec = data.spec()
    means = data.class_means(*data.load("train"), spec.n_classes)
    return plotting.image_grid(means, ncols=5, titles=list(spec.class_names),
                               suptitle="The average product of each class", cell=1.5)


@register("data-class-balance", "Images per class", "§3.3 step 1", "00_products",
          "Label counts of the training and test splits.")
def data_class_balance() -> Figure:
    spec = data.spec()
    counts = {split: torch.bincount(data.load(split)[1], minlength=spec.n_classes).tolist()
              for split in datasets.SPLITS}
    return class_balance(counts, spec.class_names)


@register("data-mirror-asymmetry", "Which classes survive a horizontal flip", "§3.3 step 2", "00_products",
          "Relative L2 distance between each class-mean training image and its mirror image.")
def data_mirror_asymmetry() -> Figure:
    spec = data.spec()
    asym = data.mirror_asymmetry(data.class_means(*data.load("train"), spec.n_classes))
    return plotting.bar_chart(asym.tolist(), spec.class_names, "||mean - mirror(mean)|| / ||mean||",
                           "Mirror asymmetry of the average product (higher: a flip changes the product)")


@register("data-normalisation", "Normalisation of pixel values", "§3.3 step 1", "00_products",
          "Histogram of test-set pixels as stored (uint8) and after scaling to [-1, 1] for a tanh generator.")
def data_normalisation() -> Figure:
    images = data.load("test")[0][:2000]
    return pixel_histograms(images.float(), data.normalize(data.to_float(images)),
                                  "stored: uint8 0..255", "normalised: [-1, 1]")


@register("data-augmentation", "Augmentation steps on the same products", "§3.3 step 2", "00_products",
          "One test image per class through each augmentation alone (seeded); vertical flip shown as the wrong choice.")
def data_augmentation() -> Figure:
    images, _ = data.showcase()
    x = data.to_float(images)
    steps = {}
    for name, transform in data.augmentations(data.spec()).items():
        config.seed_everything(SHOWCASE_SEED)
        steps[name] = torch.stack([transform(img) for img in x])
    return augmentation_table(x, steps, suptitle="§3.3 step 2: each augmentation on the same ten products")


