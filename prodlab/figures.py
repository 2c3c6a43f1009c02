"""The figure catalogue: every figure of the workbook, registered once, reproduced by one command.

``python -m prodlab figures [--out DIR] [--only ID]`` calls each registered function, saves its PNG and
writes ``index.md`` listing the figure, the article section it illustrates and how it was made.
A figure function takes no arguments, loads what it needs through ``prodlab`` and returns a Figure
built by a ``prodlab.plots`` helper; notebooks call the same helpers, so the catalogue and the book agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from prodlab import config, data, plots


@dataclass(frozen=True)
class FigureSpec:
    id: str
    title: str
    section: str  # the article section it illustrates, e.g. "§3.3 step 2"
    notebook: str  # where the figure is discussed
    how: str  # how it was made, one sentence
    make: Callable[[], Figure]


REGISTRY: dict[str, FigureSpec] = {}


def register(id: str, title: str, section: str, notebook: str, how: str):
    """Decorator: add a no-argument figure function to the catalogue under ``id``."""

    def wrap(make: Callable[[], Figure]) -> Callable[[], Figure]:
        if id in REGISTRY:
            raise ValueError(f"figure id {id!r} registered twice")
        REGISTRY[id] = FigureSpec(id, title, section, notebook, how, make)
        return make

    return wrap


def write_catalogue(out: Path = config.FIGURES_DIR, only: str | None = None) -> list[Path]:
    """Render the registered figures (or just ``only``) into ``out`` and (re)write ``out/index.md``."""
    if only is not None and only not in REGISTRY:
        raise KeyError(f"no figure {only!r}; known: {', '.join(sorted(REGISTRY))}")
    out.mkdir(parents=True, exist_ok=True)
    specs = [REGISTRY[only]] if only else list(REGISTRY.values())
    written, rows = [], []
    for spec in specs:
        start = time.perf_counter()
        fig = spec.make()
        path = out / f"{spec.id}.png"
        fig.savefig(path, facecolor="white")
        seconds = time.perf_counter() - start
        written.append(path)
        rows.append((spec, seconds))
        print(f"  {spec.id:32s} {seconds:6.1f} s  {path}")
    (out / "index.md").write_text(_index(rows, complete=only is None), encoding="utf-8")
    return written


def _index(rows: list[tuple[FigureSpec, float]], complete: bool) -> str:
    lines = [
        "# prodlab figure catalogue",
        "",
        "Made by `python -m prodlab figures`" + ("" if complete else " (partial run: `--only`)") + ".",
        f"Quick mode: {'on (reduced budgets)' if config.quick() else 'off'}.",
        "",
        "| figure | article section | notebook | how it was made | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| [{s.title}]({s.id}.png) | {s.section} | {s.notebook} | {s.how} | {sec:.1f} |" for s, sec in rows
    ]
    lines.append("")
    for spec, _ in rows:
        lines += [f"## {spec.title}", "", f"![{spec.title}]({spec.id}.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- notebook 00: the products (§1, §3.3 steps 1-2)

SHOWCASE_SEED = 0  # which products the data figures show


def showcase(per_class: int = 1, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in ``split`` (a fixed, reproducible choice)."""
    images, labels = data.load(split)
    index = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(data.CLASS_NAMES))])
    return images[index], labels[index]


@register("data-samples", "Samples of every product class", "§1, §3.3 step 1", "00_products",
          "Eight training images of each class, drawn with a fixed seed.")
def data_samples() -> Figure:
    images, labels = data.load("train")
    gen = torch.Generator().manual_seed(SHOWCASE_SEED)
    rows = []
    for c in range(len(data.CLASS_NAMES)):
        idx = torch.nonzero(labels == c).flatten()
        rows.append(images[idx[torch.randperm(len(idx), generator=gen)[:8]]])
    return plots.labelled_rows(rows, data.CLASS_NAMES, suptitle="Fashion-MNIST: 8 products per class")


@register("data-class-means", "Per-class mean images", "§3.3 step 1", "00_products",
          "Pixel-wise mean of all 6,000 training images of each class.")
def data_class_means() -> Figure:
    means = data.class_means(*data.load("train"))
    return plots.image_grid(means, ncols=5, titles=list(data.CLASS_NAMES), suptitle="The average product of each class",
                            cell=1.5)


@register("data-class-balance", "Images per class", "§3.3 step 1", "00_products",
          "Label counts of the training and test splits.")
def data_class_balance() -> Figure:
    counts = {split: torch.bincount(data.load(split)[1], minlength=10).tolist() for split in data.SPLITS}
    return plots.class_balance(counts, data.CLASS_NAMES)


@register("data-mirror-asymmetry", "Which classes survive a horizontal flip", "§3.3 step 2", "00_products",
          "Relative L2 distance between each class-mean training image and its mirror image.")
def data_mirror_asymmetry() -> Figure:
    asym = data.mirror_asymmetry(data.class_means(*data.load("train")))
    return plots.bar_chart(asym.tolist(), data.CLASS_NAMES, "||mean - mirror(mean)|| / ||mean||",
                           "Mirror asymmetry of the average product (higher: a flip changes the product)")


@register("data-normalisation", "Normalisation of pixel values", "§3.3 step 1", "00_products",
          "Histogram of test-set pixels as stored (uint8) and after scaling to [-1, 1] for a tanh generator.")
def data_normalisation() -> Figure:
    images = data.load("test")[0][:2000]
    return plots.pixel_histograms(images.float(), data.normalize(data.to_float(images)),
                                  "stored: uint8 0..255", "normalised: [-1, 1]")


@register("data-augmentation", "Augmentation steps on the same products", "§3.3 step 2", "00_products",
          "One test image per class through each augmentation alone (seeded); vertical flip shown as the wrong choice.")
def data_augmentation() -> Figure:
    images, _ = showcase()
    x = data.to_float(images)
    steps = {}
    for name, transform in data.augmentations().items():
        config.seed_everything(SHOWCASE_SEED)
        steps[name] = torch.stack([transform(img) for img in x])
    return plots.augmentation_table(x, steps, suptitle="§3.3 step 2: each augmentation on the same ten products")
