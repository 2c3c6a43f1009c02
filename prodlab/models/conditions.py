"""What a conditional generator is asked for: the class, and on a catalogue with attributes (the colour catalogue's
colour and pattern) each attribute too. Shared by the conditional GAN (chapter 02) and the diffusion U-Net
(chapter 08), so both read the same labels: int64 N (class only) or N x (1 + K) (the class, then each attribute in
the spec's order), column ``j`` in ``0 .. condition_sizes[j] - 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prodlab import datasets
from prodlab.datasets.spec import ImageSpec


class Conditioned:
    """The conditions of a model config with an ``image`` spec and a ``conditional`` switch (mixed into the frozen
    config dataclasses ``GANConfig`` and ``DiffusionConfig``)."""

    image: ImageSpec
    conditional: bool

    @property
    def n_classes(self) -> int:
        """The number of classes the model reads (0 when unconditional)."""
        return self.image.n_classes if self.conditional else 0

    @property
    def condition_sizes(self) -> tuple[int, ...]:
        """How many values each condition takes, the columns of the labels: () when unconditional, else the class
        count, then each attribute's value count in the spec's order (classes, colours, patterns)."""
        if not self.conditional:
            return ()
        return (self.image.n_classes, *(len(values) for _, values in self.image.attributes))

    @property
    def condition_names(self) -> tuple[str, ...]:
        """The name of each label column: ``class``, then the spec's attributes (empty when unconditional)."""
        return ("class", *self.image.attribute_names) if self.conditional else ()

    @property
    def on_attributes(self) -> bool:
        """Whether the model reads attributes beside the class: labels are then N x (1 + K), not N."""
        return len(self.condition_sizes) > 1


def label_columns(cfg: Conditioned, labels: Tensor | None) -> list[Tensor]:
    """The labels as one int64 column per condition (class, then each attribute); ``ValueError`` for a shape that
    is not N (class only) or N x (1 + K) (with attributes). Only the shape: cheap enough for every training step.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    if labels is None:
        raise ValueError(f"a class-conditional model needs class labels ({_describe(cfg)})")
    k = len(cfg.condition_sizes)
    if cfg.on_attributes and (labels.ndim != 2 or labels.shape[1] != k):
        raise ValueError(f"expected labels N x {k} ({_describe(cfg)}), got shape {tuple(labels.shape)}")
    if not cfg.on_attributes and labels.ndim != 1:
        raise ValueError(f"expected labels of shape (N,) ({_describe(cfg)}), got shape {tuple(labels.shape)}")
    return [labels.long()] if labels.ndim == 1 else list(labels.long().unbind(1))


def check_labels(cfg: Conditioned, labels: Tensor, n: int) -> Tensor:
    """``labels`` checked for ``n`` images: integers of shape N (class only) or N x (1 + K), column ``j`` in
    ``0 .. condition_sizes[j] - 1``; one ``ValueError`` that says the expected shape and ranges otherwise.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    labels, sizes = torch.as_tensor(labels), torch.tensor(cfg.condition_sizes)
    expected = (n, len(sizes)) if cfg.on_attributes else (n,)
    if tuple(labels.shape) != expected or labels.is_floating_point() or not _in_range(labels, sizes):
        found = f"{labels.dtype} {tuple(labels.shape)}" + (f", values {int(labels.min())}..{int(labels.max())}"
                                                           if labels.numel() else "")
        raise ValueError(f"expected integer labels of shape {expected} for {n} samples ({_describe(cfg)}), "
                         f"got {found}")
    return labels.long()


def _in_range(labels: Tensor, sizes: Tensor) -> bool:
    """Whether every column ``j`` of ``labels`` (N, or N x len(sizes)) lies in ``0 .. sizes[j] - 1``."""
    columns = labels.reshape(len(labels), len(sizes)).cpu()
    return bool(((columns >= 0) & (columns < sizes)).all())


def _describe(cfg: Conditioned) -> str:
    """``class 0..9, colour 0..7, pattern 0..3``: what each label column holds."""
    return ", ".join(f"{name} 0..{size - 1}" for name, size in zip(cfg.condition_names, cfg.condition_sizes,
                                                                   strict=True))


def random_labels(cfg: Conditioned, n: int, generator: torch.Generator | None = None) -> Tensor | None:
    """Labels for ``n`` fakes, each column uniform over its values (class N, or N x (1 + K) with attributes); None
    when unconditional. The class-only draw is the one every earlier version made, so its runs are unchanged.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    if not cfg.conditional:
        return None
    columns = [torch.randint(0, size, (n,), generator=generator) for size in cfg.condition_sizes]
    return torch.stack(columns, 1) if cfg.on_attributes else columns[0]


def training_labels(cfg: Conditioned, labels: Tensor, dataset: str) -> Tensor:
    """What a conditional model trains on: the class labels (int64 N), or for a model conditioned on attributes the
    class stacked with the data set's attributes (of its first ``len(labels)`` training images), N x (1 + K) in
    the spec's order, so the loop's batches slice them together. ``ValueError`` when the data set lacks the
    attributes the model was built for.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    if not cfg.on_attributes:
        return labels
    attributes = datasets.attributes(dataset, "train")
    if attributes is None or datasets.spec(dataset).attributes != cfg.image.attributes:
        raise ValueError(f"the model is conditioned on {', '.join(cfg.condition_names)}, but data set {dataset!r} "
                         f"does not hold those attributes: build its config from data.spec({dataset!r})")
    return torch.cat([labels[:, None], attributes[: len(labels)]], 1)


def null_label(cfg: Conditioned) -> int | tuple[int, ...]:
    """The "no label" token that classifier-free guidance trains and asks with: one past each column's values,
    ``n_classes`` for class labels, one per column (``condition_sizes``) with attributes.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    return cfg.condition_sizes if cfg.on_attributes else cfg.n_classes
