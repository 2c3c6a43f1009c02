"""A small class-conditional U-Net for product images, and the diffusion model built on it (chapter 08).

The network ``f(x_t, t, y)`` reads a noisy image, the time ``t`` in [0, 1] (1: pure noise) and a class label, and
predicts either the noise ``eps`` (DDPM, Ho et al. 2020) or the velocity ``eps - x_0`` (flow matching, Lipman et
al. 2023; rectified flow, Liu et al. 2023), as :class:`DiffusionConfig` says. Its shape (``w = cfg.width``;
sizes for Fashion-MNIST's 28 x 28 images, any side divisible by 4 works the same):

* level 1, 28 x 28: a 3x3 convolution to ``w`` channels, one residual block; 4x4 stride-2 convolution down;
* level 2, 14 x 14: one residual block at ``2w``; down; the middle, 7 x 7: two residual blocks at ``2w``;
* the mirror image upwards (4x4 stride-2 transposed convolutions), each level concatenating the skip connection
  of its level, and a 3x3 convolution back to the image's channels.

Every residual block adds a projection of the embedding ``emb = MLP(sinusoidal(t)) + embed(y)``. Label ``y =
n_classes`` is the "no label" token that classifier-free guidance (Ho & Salimans 2022) trains by dropping labels.
On a catalogue with attributes (colour, pattern) each attribute has its own table and the embeddings add up,
``embed(y) + embed_colour(c) + embed_pattern(p)``, each with its own "no label" token (``models.conditions``).
It is small enough to read in the notebook; chapter 08 checks its noising and sampling maths against diffusers'
schedulers. No attention: at 7 x 7 it bought nothing measurable on this CPU budget. A few-step student may hold one
U-Net per window of its time grid (:class:`WindowExperts`, ``DiffusionConfig.experts``), still one call a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import diffusion
from prodlab.datasets.spec import ImageSpec
from prodlab.models import conditions
from prodlab.models.conditions import Conditioned
from prodlab.models.vae import ConvVAE, VAEConfig


@dataclass(frozen=True)
class DiffusionConfig(Conditioned):
    """Shape of the U-Net and how its model samples (what a checkpoint's JSON records as ``config``), for images
    of the spec ``image``.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """

    image: ImageSpec
    width: int = 32  # channels at full size; 2 * width at half and quarter size
    conditional: bool = True  # the spec's class (and attributes) with the "no label" token of guidance, or none
    objective: str = "flow"  # "flow" (predict eps - x0) or "eps" (predict the noise, cosine schedule)
    sampler: str = "heun"  # "euler" or "heun" for flow, "ddim" for eps
    steps: int = 4  # sampler steps (Heun: two network calls per step but the last)
    guidance: float = 1.0  # classifier-free guidance scale; 1: the conditional prediction alone
    experts: int = 1  # U-Nets, one per window of an even grid of that many steps (:class:`WindowExperts`)

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ValueError(f"experts must be >= 1, not {self.experts}")
        check_unet(self.objective, self.sampler, self.width, self.steps, (self.image.height, self.image.width),
                   "image")

    @property
    def null_label(self) -> int | tuple[int, ...]:
        """The "no label" token of guidance (:func:`conditions.null_label`)."""
        return conditions.null_label(self)


def check_unet(objective: str, sampler: str, width: int, steps: int, sides: tuple[int, int], grid: str) -> None:
    """What every U-Net config must hold (chapter 08's and chapter 10's): a sampler of its objective, a width that
    GroupNorm's 8 groups divide, a step at least, and sides of its ``grid`` (the image, a latent grid) that the two
    halvings divide; a clear ``ValueError`` otherwise."""
    if objective not in diffusion.OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(diffusion.OBJECTIVES)}, not {objective!r}")
    if sampler not in diffusion.SAMPLERS[objective]:
        raise ValueError(f"sampler for {objective!r} must be one of {', '.join(diffusion.SAMPLERS[objective])}, "
                         f"not {sampler!r}")
    if width < 8 or width % 8 or steps < 1:
        raise ValueError("width must be a multiple of 8 (>= 8) and steps >= 1")
    if any(side % 4 for side in sides):
        raise ValueError(f"the U-Net halves the {grid} twice: its sides must be divisible by 4, not "
                         f"{sides[0]} x {sides[1]}")


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of ``t`` in [0, 1] (Vaswani et al. 2017), scaled by 1000 as DDPM's integer steps were.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added in between, plus a (1x1 if needed) skip path."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable from the first step
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """``f(x_t, t, y)``: N x C x H x W, N times in [0, 1], labels -> N x C x H x W. Labels are N classes
    (``n_classes``: none) or, with attributes (``attribute_sizes``, the values of each), N x (1 + K): the class
    then each attribute, value ``size`` meaning none; each column has its own embedding and they add up.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """

    def __init__(self, width: int, n_classes: int, channels: int, attribute_sizes: tuple[int, ...] = ()) -> None:
        super().__init__()
        w, w2, emb = width, 2 * width, 4 * width
        self.n_classes, self.emb_dim = n_classes, emb
        self.time_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(n_classes + 1, emb) if n_classes else None
        self.attribute_emb = nn.ModuleList(nn.Embedding(size + 1, emb) for size in attribute_sizes)
        self.stem = nn.Conv2d(channels, w, 3, padding=1)
        self.down1, self.pool1 = ResBlock(w, w, emb), nn.Conv2d(w, w, 4, stride=2, padding=1)
        self.down2, self.pool2 = ResBlock(w, w2, emb), nn.Conv2d(w2, w2, 4, stride=2, padding=1)
        self.mid1, self.mid2 = ResBlock(w2, w2, emb), ResBlock(w2, w2, emb)
        self.up_mid = nn.ConvTranspose2d(w2, w2, 4, stride=2, padding=1)
        self.up2, self.up2_up = ResBlock(2 * w2, w2, emb), nn.ConvTranspose2d(w2, w, 4, stride=2, padding=1)
        self.up1 = ResBlock(2 * w, w, emb)
        self.head = nn.Sequential(nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def embedding(self, t: Tensor, y: Tensor | None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        if self.label_emb is None:
            return emb
        tables = [self.label_emb, *self.attribute_emb]
        if y is None:  # every column's "no label" token, one past its values
            y = torch.tensor([table.num_embeddings - 1 for table in tables], device=t.device).expand(len(t), -1)
        for table, column in zip(tables, y.view(len(t), -1).unbind(1), strict=True):
            emb = emb + table(column)
        return emb

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """The channels after each of the five stages :meth:`levels` passes to ``mix``."""
        w, w2 = self.down1.conv2.out_channels, self.down2.conv2.out_channels
        return w, w2, w2, w2, w

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.levels(x, self.embedding(t, y))

    def levels(self, x: Tensor, emb: Tensor, mix: Callable[[Tensor, int], Tensor] | None = None) -> Tensor:
        """Down, middle and up for the embedding ``emb``. ``mix(h, i)``, when given, rewrites the output of stage
        ``i`` (of five: each level down, the first middle block, each level up); chapter 10's denoiser reads the
        prompt there by cross-attention."""
        mix = mix or (lambda h, _: h)
        h1 = mix(self.down1(self.stem(x), emb), 0)  # full size
        h2 = mix(self.down2(self.pool1(h1), emb), 1)  # half size
        h = self.mid2(mix(self.mid1(self.pool2(h2), emb), 2), emb)  # quarter size
        h = mix(self.up2(torch.cat([self.up_mid(h), h2], dim=1), emb), 3)
        h = mix(self.up1(torch.cat([self.up2_up(h), h1], dim=1), emb), 4)
        return self.head(h)


class WindowExperts(nn.Module):
    """One U-Net per window of an even grid of ``K`` steps from ``t = 1`` to 0: the net for time ``t`` is expert
    ``k``, whose window ``(t_{k+1}, t_k]`` holds it (``t_k = 1 - k / K``). Each call runs one U-Net, so sampling
    costs what one U-Net costs while the model holds ``K`` times its parameters, each free to specialise in its
    part of the path: eDiff-I's ensemble of expert denoisers (Balaji et al. 2022), here a distilled student's."""

    def __init__(self, experts: list[UNet]) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)

    def window(self, t: Tensor) -> Tensor:
        """Each time's expert: ``floor((1 - t) K)``, within a hair of a grid time, clamped to ``[0, K - 1]``."""
        return ((1 - t.float()) * len(self.experts) + 1e-4).floor().long().clamp(0, len(self.experts) - 1)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        k, out = self.window(t), torch.empty_like(x)
        for i in k.unique().tolist():
            rows = k == i
            out[rows] = self.experts[i](x[rows], t[rows], None if y is None else y[rows])
        return out


def unets(model: DiffusionModel) -> list[UNet]:
    """The U-Nets of a diffusion model: its one, or its window experts in order."""
    return list(model.net.experts) if isinstance(model.net, WindowExperts) else [model.net]


class DiffusionModel(nn.Module):
    """A trained U-Net with its objective and default sampler: what ``diffusion`` ships (images in [-1, 1] inside).

    ``sample(n, generator, labels)`` is the common generator interface of ``prodlab.checkpoints``.
    Chapter 08 (notebooks/08_diffusion.ipynb).
    """

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nets = [UNet(cfg.width, cfg.n_classes, cfg.image.channels, cfg.condition_sizes[1:]) for _ in range(cfg.experts)]
        self.net: nn.Module = nets[0] if cfg.experts == 1 else WindowExperts(nets)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(x, t, y)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None,
               steps: int | None = None, guidance: float | None = None) -> Tensor:
        """``n`` new products (float N x C x H x W in [0, 1]) with the config's sampler, steps and guidance."""
        if labels is not None and not self.cfg.n_classes:
            raise ValueError("this diffusion model is unconditional: sample() takes no labels")
        labels = None if labels is None else conditions.check_labels(self.cfg, labels, n)
        self.eval()
        x = diffusion.sample(self, (n, *self.cfg.image.shape), self.cfg.objective, self.cfg.sampler,
                             steps or self.cfg.steps, labels, self.cfg.guidance if guidance is None else guidance,
                             generator, null_label=self.cfg.null_label)
        return ((x.clamp(-1, 1) + 1) / 2).float()


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (a column of chapter 08's family table)."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LatentDiffusionConfig:
    """The latent prior of ``latent-diffusion``: an MLP flow on the codes of a shipped VAE (``vae-sharp``), whose
    config ``first_stage`` it holds (its image spec is the images the model draws).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """

    first_stage: VAEConfig
    hidden: int = 256
    depth: int = 3  # residual MLP blocks
    objective: str = "flow"
    sampler: str = "heun"
    steps: int = 25

    def __post_init__(self) -> None:
        if self.sampler not in diffusion.SAMPLERS.get(self.objective, ()):
            raise ValueError(f"sampler {self.sampler!r} does not fit objective {self.objective!r}")

    @property
    def latent_dim(self) -> int:
        return self.first_stage.latent_dim

    @property
    def image(self) -> ImageSpec:
        return self.first_stage.image


class LatentMLP(nn.Module):
    """``f(z_t, t)`` for latent codes: residual SiLU blocks with the time embedding added to each."""

    def __init__(self, latent_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp, self.out = nn.Linear(latent_dim, hidden), nn.Linear(hidden, latent_dim)
        self.time_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(depth))

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.inp(z) + self.time_mlp(timestep_embedding(t, self.hidden))
        for block in self.blocks:
            h = h + block(h)
        return self.out(F.silu(h))


class LatentDiffusion(nn.Module):
    """Two-stage VAE (Dai & Wipf 2019): a flow prior over the VAE's standardised latent codes, then its decoder.

    Sampling draws ``z`` from the learned prior instead of ``N(0, I)``, so it lands where the encoder put training
    images, not in the "holes" of chapter 03's prior. The VAE is held inside (frozen copy), so one checkpoint
    samples on its own. Chapter 08 (notebooks/08_diffusion.ipynb).
    """

    def __init__(self, cfg: LatentDiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = LatentMLP(cfg.latent_dim, cfg.hidden, cfg.depth)
        self.vae = ConvVAE(cfg.first_stage)
        self.register_buffer("z_mean", torch.zeros(self.cfg.latent_dim))
        self.register_buffer("z_std", torch.ones(self.cfg.latent_dim))

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(z, t, y)

    def standardise(self, z: Tensor) -> Tensor:
        return (z - self.z_mean) / self.z_std

    @torch.no_grad()
    def sample_latents(self, n: int, generator: torch.Generator | None = None, steps: int | None = None) -> Tensor:
        """``n`` latent codes from the learned prior, in the VAE's own scale."""
        self.eval()
        u = diffusion.sample(self, (n, self.cfg.latent_dim), self.cfg.objective, self.cfg.sampler,
                             steps or self.cfg.steps, generator=generator)
        return u * self.z_std + self.z_mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None,
               steps: int | None = None) -> Tensor:
        """``n`` new products (float N x C x H x W in [0, 1]): prior sample, then the VAE's decoder."""
        if labels is not None:
            raise ValueError("latent-diffusion is unconditional: sample() takes no labels")
        return self.vae.decode(self.sample_latents(n, generator, steps))
