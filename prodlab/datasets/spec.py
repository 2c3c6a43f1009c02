"""The image spec: what a data set's images are (channels, size, classes, attributes, pixel statistics).

Every model config, metric, editor, search embedding and widget takes its image shape and classes from the
:class:`ImageSpec` of the data set it was trained on, never from a literal; a checkpoint's JSON records it whole, so
a model knows what it draws and reads. A data set definition (``prodlab.datasets.fashion_mnist``, an imported
folder, the colour catalogue) is the one place that writes the numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ImageSpec:
    """Images ``channels`` x ``height`` x ``width`` with one class each (``class_names``), optional extra labelled
    ``attributes`` (name -> value names, e.g. colour and pattern), and per-channel ``mean`` and ``std`` of the
    training pixels in [0, 1] (what a classifier standardises its input with).

    Chapter 00 (notebooks/00_products.ipynb).
    """

    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.channels < 1 or self.height < 4 or self.width < 4:
            raise ValueError(f"an image spec needs >= 1 channel and >= 4 x 4 pixels, not {self.shape}")
        if len(self.class_names) < 1 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError("an image spec needs at least one class, each named once")
        if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
            raise ValueError(f"mean and std need one value per channel ({self.channels}), std > 0")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``: one image as the models see it (floats N x C x H x W)."""
        return (self.channels, self.height, self.width)

    @property
    def num_pixels(self) -> int:
        """Values per image, ``C * H * W`` (the length of a flattened image)."""
        return self.channels * self.height * self.width

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.attributes)

    def values(self, attribute: str) -> tuple[str, ...]:
        """The value names of ``attribute`` (``"class"`` gives the class names)."""
        if attribute == "class":
            return self.class_names
        found = dict(self.attributes)
        if attribute not in found:
            raise ValueError(f"no attribute {attribute!r}; attributes: class, {', '.join(found) or '(none)'}")
        return found[attribute]

    def describe(self) -> str:
        """One line for listings: ``3 x 32 x 32, 10 classes (+ colour 8, pattern 4)``."""
        extra = "".join(f", {name} {len(v)}" for name, v in self.attributes)
        return f"{self.channels} x {self.height} x {self.width}, {self.n_classes} classes{extra}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ImageSpec:
        """The inverse of :meth:`to_json` (JSON lists become the tuples they were)."""
        if not isinstance(obj, dict):
            raise ValueError("an image spec must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        if set(obj) - known or not {"channels", "height", "width", "class_names", "mean", "std"} <= set(obj):
            raise ValueError(f"not an image spec: fields {sorted(obj)}")
        attributes = tuple((str(n), tuple(v)) for n, v in obj.get("attributes", ()))
        return cls(int(obj["channels"]), int(obj["height"]), int(obj["width"]), tuple(obj["class_names"]),
                   tuple(float(v) for v in obj["mean"]), tuple(float(v) for v in obj["std"]), attributes)

    @classmethod
    def measure(cls, images: torch.Tensor, class_names: tuple[str, ...],
                attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> ImageSpec:
        """The spec of uint8 training images N x H x W x C, with their per-channel mean and standard deviation."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images N x H x W x C, got {images.dtype} {tuple(images.shape)}")
        x = images.flatten(0, 2).double() / 255.0
        mean, std = x.mean(0), x.std(0)
        return cls(images.shape[3], images.shape[1], images.shape[2], tuple(class_names),
                   tuple(round(float(v), 4) for v in mean), tuple(max(round(float(v), 4), 1e-4) for v in std),
                   attributes)  # a channel of one constant value has std 0: floored, so standardising stays finite
