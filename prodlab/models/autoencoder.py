"""The first stage of a latent diffusion model (issue 26, notebook 10): an autoencoder from product photos to a small
grid of latent numbers and back (Rombach et al. 2022, "KL-regularised" autoencoder).

A text-to-image model of today does not denoise pixels: an autoencoder first maps each image to a grid a few times
smaller on each side (Stable Diffusion: 512 x 512 x 3 pixels to 64 x 64 x 4 numbers), the diffusion model learns that
grid's distribution, and the decoder turns its samples back into pixels. The grid keeps the image's layout (a latent
position still sits over a part of the product), so a denoiser can attend from each position to the words of a prompt.

Here: ``3 x 32 x 32`` colour photos to ``latent_channels x 8 x 8`` (``len(widths) - 1`` halvings). The encoder gives a
mean and a log-variance per latent number; training adds a small KL term towards ``N(0, 1)`` (``kl_weight`` of the
recipe, tiny, as in Stable Diffusion's first stage) that keeps the latents on a common scale without blurring them the
way chapter 03's VAE does. A residual GroupNorm block at every size; the decoder mirrors the encoder with nearest
upsampling and ends in a sigmoid (pixels in [0, 1]).

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import data
from prodlab.datasets.spec import ImageSpec


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the first stage (what a checkpoint's JSON records as ``config``): the image spec, the widths at each
    size (full size first; every further width halves the side) and the latent channels.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    image: ImageSpec
    widths: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    groups: int = 8

    def __post_init__(self) -> None:
        factor = self.factor
        if len(self.widths) < 2 or any(w % self.groups for w in self.widths) or self.latent_channels < 1:
            raise ValueError(f"an autoencoder needs at least two widths, each divisible by groups ({self.groups}), "
                             f"and at least one latent channel, not widths {self.widths}")
        if self.image.height % factor or self.image.width % factor:
            raise ValueError(f"the autoencoder halves the image {len(self.widths) - 1} times: its sides must be "
                             f"divisible by {factor}, not {self.image.height} x {self.image.width}")

    @property
    def factor(self) -> int:
        """How many times smaller each side of the latent grid is than the image's."""
        return 2 ** (len(self.widths) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``latent_channels x H / factor x W / factor``."""
        return self.latent_channels, self.image.height // self.factor, self.image.width // self.factor


class _Residual(nn.Module):
    """``x + conv(SiLU(norm(conv(SiLU(norm(x))))))``: the same width in and out, the second conv started at zero."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _head(width: int, out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, out, 3, padding=1))


class Autoencoder(nn.Module):
    """Images N x C x H x W in [0, 1] -> latent means and log-variances N x latent_shape -> images.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, g = cfg.widths, cfg.groups
        enc: list[nn.Module] = [nn.Conv2d(cfg.image.channels, w[0], 3, padding=1), _Residual(w[0], g)]
        for a, b in zip(w[:-1], w[1:], strict=True):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), _Residual(b, g)]
        self.encoder = nn.Sequential(*enc, _head(w[-1], 2 * cfg.latent_channels, g))
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, w[-1], 3, padding=1), _Residual(w[-1], g)]
        for a, b in zip(w[:0:-1], w[-2::-1], strict=True):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), _Residual(b, g)]
        self.decoder = nn.Sequential(*dec, _head(w[0], cfg.image.channels, g))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's mean and log-variance (each N x latent_shape) of images in [0, 1]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """Images in [0, 1] of latents N x latent_shape."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The reconstruction of one latent draw ``z = mean + exp(logvar / 2) eps``, the mean and the log-variance."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        return self.decode(mean + (logvar / 2).exp() * eps), mean, logvar

    @torch.no_grad()
    def latents(self, images: Tensor | np.ndarray, batch_size: int = 500) -> Tensor:
        """The latent means of many images in any form ``data.as_batch`` accepts, in batches, on the CPU."""
        self.eval()
        return torch.cat([self.encode(data.as_batch(images[i : i + batch_size], self.cfg.image))[0].cpu()
                          for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def reconstruct(self, images: Tensor | np.ndarray) -> Tensor:
        """Images in [0, 1] decoded from their latent means (what the first stage keeps of a photo)."""
        return torch.cat([self.decode(z) for z in self.latents(images).split(500)])


def reconstruction_loss(recon: Tensor, x: Tensor, mean: Tensor, logvar: Tensor, kl_weight: float) -> Tensor:
    """The first stage's loss: the mean squared error per pixel plus ``kl_weight`` times the KL to ``N(0, 1)`` per
    latent number (both means, so the weight does not change with the image or latent size).

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    return F.mse_loss(recon, x) + kl_weight * kl
