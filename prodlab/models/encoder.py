"""A self-supervised image encoder: the second ruler of chapter 04 (issue 27), trained by SimCLR without labels.

Every sample metric of ``prodlab.metrics`` is measured in a feature space, and one feature space can favour one
generator by accident of how it was made. The first space is the product classifier's (``prodlab.models.classifier``):
a conv-BatchNorm stack, flattened, trained on the class labels. This second one shares neither the architecture
nor the training signal, so a ranking of generators that holds in both spaces is a ranking of the generators:

* architecture: a small residual network (He et al. 2016) with GroupNorm (Wu and He 2018) and global average
  pooling. A 3x3 stem at full resolution, then one residual block per further width, each halving the side with a
  strided convolution (28 -> 14 -> 7 -> 4 pixels for Fashion-MNIST with the default widths); the feature vector is
  the spatial average of the last block (``widths[-1]`` numbers, non-negative after the last ReLU). GroupNorm
  normalises each image on its own: an image's features never depend on the batch it is measured in, and training
  and evaluation compute the same function (no running statistics; contrastive learning with BatchNorm can also
  cheat by reading which images share a batch, Chen et al. 2020 section B.2).
* training signal: SimCLR (Chen et al. 2020; ``prodlab.training.contrastive``): two random views of each image
  must find each other among the other views of the batch. The projection head (two linear layers) carries the
  contrastive loss during training only; the metrics read :meth:`ContrastiveEncoder.features`, the representation
  before it, which the paper finds keeps more of the image than the projection.

The input is standardised per channel with the spec's pixel statistics; the image shape and channels come from the
config's image spec, never from a literal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prodlab import data
from prodlab.datasets.spec import ImageSpec


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder (what a checkpoint's JSON records as ``config``), for images of the spec ``image``:
    the stem's width then one residual block per further width, GroupNorm ``groups``, and the projection head's
    output (the representation has ``widths[-1]`` numbers).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """

    image: ImageSpec
    widths: tuple[int, ...] = (16, 32, 64, 128)  # (32, 64, 128) costs 2.3 times as much a step
    groups: int = 8  # GroupNorm groups: must divide every width
    projection_dim: int = 64  # the space the contrastive loss compares views in (training only)

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(w % self.groups for w in self.widths):
            raise ValueError(f"an encoder needs a stem and at least one block, each width divisible by groups "
                             f"({self.groups}), not widths {self.widths}")


class _Block(nn.Module):
    """A residual block that halves the side: (3x3 conv stride 2, norm, ReLU, 3x3 conv, norm) + a strided 1x1
    projection of the input, then ReLU."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(groups, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out),
        )
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.GroupNorm(groups, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ContrastiveEncoder(nn.Module):
    """Residual GroupNorm network over images of the config's spec; :meth:`features` is the second ruler's space,
    :meth:`forward` the projection the SimCLR loss compares.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stem = cfg.widths[0]
        self.body = nn.Sequential(
            nn.Conv2d(cfg.image.channels, stem, 3, padding=1, bias=False), nn.GroupNorm(cfg.groups, stem),
            nn.ReLU(inplace=True),
            *(_Block(c_in, c_out, cfg.groups) for c_in, c_out in itertools.pairwise(cfg.widths)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        width = cfg.widths[-1]
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                        nn.Linear(width, cfg.projection_dim))
        shape = (1, cfg.image.channels, 1, 1)
        self.register_buffer("pixel_mean", torch.tensor(cfg.image.mean).reshape(shape), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.image.std).reshape(shape), persistent=False)

    @property
    def num_features(self) -> int:
        return self.cfg.widths[-1]

    def features(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The representation (N x ``widths[-1]``, non-negative) of images in any form ``data.as_batch`` accepts
        (float N x C x H x W in [0, 1], uint8 N x H x W x C) of the config's spec: the second ruler's feature space.

        Chapter 04 (notebooks/04_evaluation.ipynb).
        """
        x = data.as_batch(images, self.cfg.image).to(self.pixel_mean.device)
        return self.body((x - self.pixel_mean) / self.pixel_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projection of the features (N x ``projection_dim``) that the contrastive loss compares; called
        through ``forward`` in training so that DistributedDataParallel averages every gradient.

        Chapter 04 (notebooks/04_evaluation.ipynb).
        """
        return self.projection(self.features(x))

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray, batch_size: int = 500) -> torch.Tensor:
        """:meth:`features` of many images, in batches and without gradients, on the CPU (float32 N x features).
        GroupNorm has no train or eval mode: the result depends neither on the model's mode nor (beyond float
        rounding) on the batches.

        Chapter 04 (notebooks/04_evaluation.ipynb).
        """
        x = data.as_batch(images, self.cfg.image)
        return torch.cat([self.features(x[i : i + batch_size]).cpu() for i in range(0, len(x), batch_size)])
