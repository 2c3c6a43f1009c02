"""Images as every model sees them, whatever the data set (article §3.3 steps 1-2: scale and normalise pixels).

Stored images are uint8 N x H x W x C (the layout of PIL, NumPy and image files); models read floats
N x C x H x W in [0, 1] (:func:`to_float`), and GANs and diffusion models work in [-1, 1] (:func:`normalize`).
:func:`as_batch` is the one gate every image batch passes through: it takes any accepted form, checks it against the
data set's :class:`~prodlab.datasets.spec.ImageSpec` and returns the float batch. Which data set: ``dataset=``, by
name (``prodlab.datasets``); chapters 00-08 use the default, Fashion-MNIST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from prodlab import datasets
from prodlab.datasets import DEFAULT
from prodlab.datasets.fashion_mnist import DataError  # noqa: F401  (re-exported: what a missing data set raises)
from prodlab.datasets.spec import ImageSpec

if TYPE_CHECKING:  # for the annotations only: torchvision is imported where it is used (seconds to import)
    from torchvision.transforms import v2


def spec(dataset: str = DEFAULT) -> ImageSpec:
    """The image spec of ``dataset``: channels, size, class names, pixel statistics.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return datasets.spec(dataset)


def load(split: str = "train", download: bool = True, dataset: str = DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N x H x W x C) and labels (int64 N) of ``split`` ('train' or 'test') of ``dataset``.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return datasets.load(dataset, split, download)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [0, 1] (§3.3 step 1: scale pixel values).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    if images.ndim != 4:
        raise ValueError(f"expected uint8 images N x H x W x C, got shape {tuple(images.shape)}")
    return _standard(images.permute(0, 3, 1, 2).float().div(255.0))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N x C x H x W in [0, 1] -> uint8 N x H x W x C (clamped, rounded): what samples and snapshots store.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    if x.ndim != 4:
        raise ValueError(f"expected float images N x C x H x W, got shape {tuple(x.shape)}")
    return _standard(x.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1))


def _standard(x: torch.Tensor) -> torch.Tensor:
    """``x`` with row-major strides. ``contiguous()`` keeps the strides of a permuted one-channel batch (its size-1
    dimension makes it count as contiguous), and convolution kernels pick their path by strides: other strides,
    other float rounding."""
    return x.clone(memory_format=torch.contiguous_format)


def as_batch(images: torch.Tensor | np.ndarray, image: ImageSpec | None = None) -> torch.Tensor:
    """Any accepted image batch -> float32 N x C x H x W in [0, 1]; ``ValueError`` naming the shape otherwise.

    Accepted: uint8 N x H x W x C (stored images), float N x C x H x W in [0, 1] (what models output), one float
    image C x H x W, and for one-channel images uint8 N x H x W. With ``image`` the shape must be that spec's.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = to_float(x.unsqueeze(-1) if x.ndim == 3 else x)
    elif x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images N x C x H x W (or uint8 N x H x W x C), got {tuple(x.shape)}")
    if image is not None and tuple(x.shape[1:]) != image.shape:
        raise ValueError(f"expected images of shape {image.shape} (channels, height, width), got {tuple(x.shape[1:])}")
    x = x.float()
    if len(x) and (x.min() < -1e-4 or x.max() > 1.0 + 1e-4):
        raise ValueError(f"float images must lie in [0, 1] (found {x.min():.2f}..{x.max():.2f}); "
                         "map [-1, 1] outputs with prodlab.data.denormalize first")
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range a tanh generator outputs (§3.3 step 1: normalisation).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return x * 2.0 - 1.0


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def showcase(per_class: int = 1, split: str = "test", dataset: str = DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in ``split``: the fixed products the chapters show.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    images, labels = load(split, dataset=dataset)
    classes = range(spec(dataset).n_classes)
    index = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in classes])
    return images[index], labels[index]


def class_means(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The average product of each of ``n_classes`` classes: float n_classes x C x H x W in [0, 1].

    Chapter 00 (notebooks/00_products.ipynb).
    """
    x = as_batch(images)
    return torch.stack([x[labels == c].mean(0) for c in range(n_classes)])


def mirror_asymmetry(means: torch.Tensor) -> torch.Tensor:
    """Relative L2 distance between each class-mean image and its mirror image.

    Near 0: the class looks the same mirrored, so a horizontal flip is a safe augmentation. Large (the
    shoes, which Fashion-MNIST photographs toe to the left): a flip makes products the catalogue never shows.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    flat, mirrored = means.flatten(1), means.flip(-1).flatten(1)
    return (flat - mirrored).norm(dim=1) / flat.norm(dim=1)


def augmentations(image: ImageSpec) -> dict[str, v2.Transform]:
    """The §3.3 step 2 augmentations, each alone, on float images in [0, 1] of the spec ``image``.

    Vertical flip is included as the counter-example: products are photographed upright, so an
    upside-down shoe is not a plausible catalogue image and teaches the model something false.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    from torchvision.transforms import v2  # torchvision is slow to import: only here and when building the cache

    pad = max(1, image.height // 9)  # a shift of about a ninth of the image
    return {
        "horizontal flip": v2.RandomHorizontalFlip(p=1.0),
        f"shift (pad {pad} + crop)": v2.RandomCrop((image.height, image.width), padding=pad),
        "contrast jitter": v2.ColorJitter(brightness=0.3, contrast=0.5),
        "vertical flip (wrong)": v2.RandomVerticalFlip(p=1.0),
    }


def check_fits(image: ImageSpec, dataset: str) -> None:
    """``ValueError`` unless a model made for images ``image`` can train on ``dataset``: the same image shape and
    the same classes (a model cannot read images of another size, nor name classes it was not built for).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    found = spec(dataset)
    if (found.shape, found.class_names) != (image.shape, image.class_names):
        raise ValueError(f"the model is made for images {image.describe()}, but data set {dataset!r} holds "
                         f"{found.describe()}: build the model's config from data.spec({dataset!r})")
