"""The products (chapter 00, §1, §3.3 steps 1-2):
the figures of notebooks/00_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import config, data, datasets, plotting
from prodlab.datasets import colour
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


def _first_of_each(labels: torch.Tensor, attribute: torch.Tensor, n_classes: int, n_values: int) -> torch.Tensor:
    """Index of the first product of every (attribute value, class) pair: n_values x n_classes."""
    return torch.tensor([[int(torch.nonzero((attribute == v) & (labels == c))[0]) for c in range(n_classes)]
                         for v in range(n_values)])


@functools.lru_cache(maxsize=1)
def _colour_test_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The colour catalogue's test split, made once per process for the figures that show it (seconds)."""
    return colour.make_split("test")


def _colour_rows(attribute: int, suptitle: str) -> Figure:
    """One row per value of the colour catalogue's ``attribute`` (0 colour, 1 pattern), one column per class."""
    images, labels, attributes = _colour_test_split()
    names = colour.ATTRIBUTES[attribute][1]
    classes = data.spec().class_names
    index = _first_of_each(labels, attributes[:, attribute], len(classes), len(names))
    return plotting.labelled_rows([images[row] for row in index], names, suptitle=suptitle, cell=0.8,
                                  col_titles=[c.replace("/", "/\n") for c in classes])


@register("colour-catalogue", "The colour catalogue: every class in every colour", "§3.3 step 1", "00_products",
          "The first test product of each (colour, class), made from Fashion-MNIST by prodlab.datasets.colour "
          "(seeded, offline): exactly the stored catalogue's test split.")
def colour_catalogue() -> Figure:
    return _colour_rows(0, "The colour catalogue: one product per colour and class (any pattern)")


@register("colour-patterns", "The colour catalogue's four patterns", "§3.3 step 1", "00_products",
          "The first test product of each (pattern, class) of the colour catalogue (any colour).")
def colour_patterns() -> Figure:
    return _colour_rows(1, "The colour catalogue: one product per pattern and class (any colour)")


@register("colour-steps", "Making a colour product, step by step", "§3.3 step 1", "00_products",
          "prodlab.datasets.colour.render_stages on the first test product of each class (seeded colours and "
          "patterns): every stage from the grey original to the studio photo.")
def colour_steps() -> Figure:
    images, labels = data.showcase()
    gen = torch.Generator().manual_seed(SHOWCASE_SEED)
    attributes = colour.draw_attributes(len(images), gen)
    stages = colour.render_stages(images, attributes[:, 0], attributes[:, 1], gen)
    titles = ["grey original", "shape", "shade", "pattern", "surface", "product", "background + shadow",
              "photo"]
    return plotting.labelled_rows(list(stages.values()), titles, cell=0.8, label_width=1.6,
                                  suptitle="From a grey product to a colour photo (prodlab.datasets.colour)")

