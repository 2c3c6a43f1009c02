"""DCGAN generator and discriminator for product images (article §2.2, §3.1), plain and class-conditional.

The article's GAN (§2.2) is a generator ``G`` that maps noise ``z`` to a product image and a discriminator ``D``
that tells real from generated images; it names no architecture. This is the DCGAN of Radford et al. (2016)
shrunk to small images and to two CPU cores (``w = cfg.width``, default 32; ``k`` stride-2 stages, two for 28 x 28
and 32 x 32 images, three for 64 x 64: ``prodlab.models.shapes``). For Fashion-MNIST's 28 x 28 grey products:

* Generator: ``z`` (N x latent_dim) [+ one-hot class] -> Linear -> 4w x 7 x 7 -> BN, ReLU -> 4x4 transposed
  convolution, stride 2 -> 2w x 14 x 14 -> BN, ReLU -> 4x4 transposed convolution, stride 2 -> C x 28 x 28 ->
  ``tanh``: an image in [-1, 1] (the range of ``data.normalize``); :meth:`GAN.sample` maps it to [0, 1].
* Discriminator: C x 28 x 28 in [-1, 1] -> 4x4 convolution, stride 2 -> 2w x 14 x 14 -> LeakyReLU(0.2) -> 4x4
  convolution, stride 2 -> 4w x 7 x 7 -> BN (or spectral normalisation, Miyato et al. 2018) -> LeakyReLU ->
  flatten (the 4w*49 "features") -> one **logit** ``l`` with ``D(x) = sigmoid(l)`` (``prodlab.losses`` takes logits).

A third stage doubles the channels once more (8w at the bottom). The class-conditional variant (``conditional``,
shipped as ``cdcgan``) is how one asks for "a sneaker": the generator reads the one-hot class next to ``z``
(Mirza & Osindero 2014) and the discriminator adds the projection term ``<embed(y), features(x)>`` to its logit
(Miyato & Koyama 2018), so it judges "a real *sneaker*?", not just "a real product?". On a spec with attributes
(the colour catalogue's colour and pattern) a conditional GAN is conditioned on each of them as well: G reads the
one-hots of class, colour and pattern side by side, D's projection sums one embedding per condition
(``<embed(y) + embed_colour(a) + embed_pattern(p), features(x)>``), and labels are N x (1 + K) (the class, then
each attribute in the spec's order: :attr:`GANConfig.condition_sizes`). Without attributes nothing changes.
With ``class_norm`` (the shipped ``colour-cdcgan``) every batch norm of G also takes the labels
(:class:`ClassBatchNorm`), as in the projection GAN's own generator. With ``aux_classifier`` (also the shipped
``colour-cdcgan``) D has a second head, a linear classifier of the product class on the same features: the recipe's
``aux_weight`` trains it on real images and asks G's fakes to be classified as the class they were drawn for
(AC-GAN, Odena et al. 2017, with the class loss on real images only for D).

Weights start from the DCGAN initialisation (§3.1.2 step 1): convolution and linear weights ~ N(0, 0.02²) (standard
deviation 0.02), batch norm scales ~ N(1, 0.02²), biases 0.

Sampling can trade diversity for fidelity with the truncation trick (Brock et al. 2019, BigGAN): ``z`` drawn from a
normal truncated to ``[-t, t]`` (:func:`truncated_normal`) instead of N(0, I); chapter 02 measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from prodlab import data
from prodlab.datasets.spec import ImageSpec
from prodlab.models import shapes
from prodlab.models.conditions import Conditioned, check_labels, label_columns, random_labels


@dataclass(frozen=True)
class GANConfig(Conditioned):
    """Shape of a GAN (what a checkpoint's JSON records as ``config``), for images of the spec ``image``.

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    image: ImageSpec
    latent_dim: int = 64
    width: int = 32  # w: the generator's feature maps are 4w x 7 x 7 and 2w x 14 x 14 (28 px), D's mirror them
    conditional: bool = False  # one generator for every product class of the spec (cdcgan), or none (dcgan)
    spectral_norm: bool = False  # discriminator: spectral normalisation of every layer instead of batch norm
    class_norm: bool = False  # conditional G: each BN's scale and shift also depend on the labels (ClassBatchNorm)
    aux_classifier: bool = False  # conditional D: a second head that classifies the product class (AC-GAN)

    def __post_init__(self) -> None:
        for switch in ("class_norm", "aux_classifier"):
            if getattr(self, switch) and not self.conditional:
                raise ValueError(f"{switch} works on the labels: it needs conditional=True")

    @property
    def stages(self) -> int:
        """Stride-2 stages between the image and the coarsest feature map (``prodlab.models.shapes``)."""
        return shapes.halvings(self.image)

    @property
    def features(self) -> int:
        """Length of D's flattened last feature map: ``w * 2**stages`` channels times its pixels."""
        h, w = shapes.bottom(self.image, self.stages)
        return self.width * 2**self.stages * h * w


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016, §4): N(0, 0.02²) weights, N(1, 0.02²) BN scales, zero biases.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ClassBatchNorm(nn.Module):
    """Class-conditional batch norm (de Vries et al. 2017; the generator of Miyato & Koyama 2018 and BigGAN): a BN
    whose scale and shift get one learned offset per condition value, ``BN(x) * (1 + sum_k gain_k[y_k]) +
    sum_k shift_k[y_k]``. The one-hot at G's input reaches the image through every layer's weights; here each
    layer is told the label directly, so "a coat", not just "an upper garment", shapes every feature map.

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    def __init__(self, channels: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.gain = nn.ModuleList(nn.Embedding(size, channels) for size in sizes)
        self.shift = nn.ModuleList(nn.Embedding(size, channels) for size in sizes)

    def forward(self, x: Tensor, columns: list[Tensor]) -> Tensor:
        gain = 1 + sum(embed(c) for embed, c in zip(self.gain, columns, strict=True))
        shift = sum(embed(c) for embed, c in zip(self.shift, columns, strict=True))
        return self.norm(x) * gain[:, :, None, None] + shift[:, :, None, None]


class Generator(nn.Module):
    """``G(z, y)``: noise N x latent_dim (and labels, if conditional: classes N, or N x (1 + K) with attributes)
    -> images N x C x H x W in [-1, 1].

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = [cfg.width * 2**i for i in range(cfg.stages, 0, -1)]  # 4w, 2w for two stages
        h, w = shapes.bottom(cfg.image, cfg.stages)
        inputs = cfg.latent_dim + sum(cfg.condition_sizes)  # z, then the one-hots of class (and attributes)
        self.project = nn.Sequential(nn.Linear(inputs, channels[0] * h * w, bias=False),
                                     nn.Unflatten(1, (channels[0], h, w)), self._norm(channels[0]), nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):  # each doubles the size: 7 -> 14
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                       self._norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], cfg.image.channels, 4, stride=2, padding=1), nn.Tanh()]  # -> 28
        self.upsample = nn.Sequential(*layers)
        self.apply(init_dcgan)

    def _norm(self, channels: int) -> nn.Module:
        return ClassBatchNorm(channels, self.cfg.condition_sizes) if self.cfg.class_norm else nn.BatchNorm2d(channels)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        columns: list[Tensor] = []
        if self.cfg.conditional:  # one-hots side by side: class | colour | pattern
            columns = label_columns(self.cfg, labels)
            one_hots = torch.cat([F.one_hot(c, size) for c, size in zip(columns, self.cfg.condition_sizes,
                                                                         strict=True)], dim=1)
            z = torch.cat([z, one_hots.to(z.dtype)], dim=1)
        x = z
        for layer in [*self.project, *self.upsample]:
            x = layer(x, columns) if isinstance(layer, ClassBatchNorm) else layer(x)
        return x


class Discriminator(nn.Module):
    """``D``: images N x C x H x W in [-1, 1] (and labels, if conditional) -> logits N (``D = sigmoid(logit)``).

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        norm = spectral_norm if cfg.spectral_norm else (lambda m: m)
        channels = [cfg.width * 2**i for i in range(1, cfg.stages + 1)]  # 2w, 4w for two stages
        layers: list[nn.Module] = [norm(nn.Conv2d(cfg.image.channels, channels[0], 4, stride=2, padding=1)),
                                   nn.LeakyReLU(0.2)]  # 28 -> 14
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):  # 14 -> 7
            layers += [norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=cfg.spectral_norm)),
                       nn.Identity() if cfg.spectral_norm else nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = norm(nn.Linear(cfg.features, 1))
        self.embed = norm(nn.Embedding(cfg.n_classes, cfg.features)) if cfg.n_classes else None
        # one more projection embedding per attribute, in the spec's order (none without attributes: same tensors)
        self.embed_attributes = nn.ModuleList(norm(nn.Embedding(size, cfg.features))
                                              for size in cfg.condition_sizes[1:])
        self.classify = norm(nn.Linear(cfg.features, cfg.n_classes)) if cfg.aux_classifier else None
        self.apply(init_dcgan)

    def features(self, x: Tensor) -> Tensor:
        """The flattened last feature map, N x ``cfg.features`` (4w * 49 for 28 x 28 images): what the logit (and the
        projection) is computed from."""
        return self.body(x)

    def forward(
        self, x: Tensor, labels: Tensor | None = None, with_class: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The logits N; with ``with_class`` (needs ``aux_classifier``) also the class head's logits N x classes, from
        the same features (one call, so that DDP sees one forward)."""
        h = self.features(x)
        logit = self.head(h).squeeze(1)
        if self.embed is not None:  # projection: "is it a real product of class y (in colour a, pattern p)?"
            columns = label_columns(self.cfg, labels)
            e = self.embed(columns[0])
            for embed, column in zip(self.embed_attributes, columns[1:], strict=True):
                e = e + embed(column)
            logit = logit + (e * h).sum(1)
        if not with_class:
            return logit
        if self.classify is None:
            raise ValueError("with_class needs a discriminator with a class head (GANConfig.aux_classifier)")
        return logit, self.classify(h)


class GAN(nn.Module):
    """A generator and its discriminator, saved and loaded together as one checkpoint.

    ``generator`` is what :meth:`sample` uses (the shipped weights may be its exponential moving average);
    ``discriminator`` is kept so later notebooks can reuse its features (e.g. product search).

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = Generator(self.cfg)
        self.discriminator = Discriminator(self.cfg)

    @property
    def conditional(self) -> bool:
        return self.cfg.n_classes > 0

    def noise(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> Tensor:
        """§3.1.2 step 2: ``z ~ N(0, I)``, N x latent_dim; with ``truncation=t`` each entry from N(0, 1) truncated
        to ``[-t, t]`` (the truncation trick, :func:`truncated_noise`)."""
        if truncation is None:
            return torch.randn(n, self.cfg.latent_dim, generator=generator)
        return truncated_noise(n, self.cfg.latent_dim, truncation, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None,
               truncation: float | None = None) -> Tensor:
        """``n`` new products as float images N x C x H x W in [0, 1] (eval mode: deterministic given the noise).

        Conditional models take one label per image: a class (N), or with attributes a row N x (1 + K) (class,
        then each attribute: :func:`check_labels`); when None each column is drawn uniformly from ``generator``.
        Unconditional ones refuse labels. ``truncation=t``: the truncation trick (see :meth:`noise`).
        """
        if labels is not None and not self.conditional:
            raise ValueError("this GAN is unconditional: sample() takes no labels")
        z = self.noise(n, generator, truncation)
        labels = random_labels(self.cfg, n, generator) if labels is None else check_labels(self.cfg, labels, n)
        return self.render(z, labels)

    @torch.no_grad()
    def render(self, z: Tensor, labels: Tensor | None = None, batch_size: int = 250) -> Tensor:
        """``G(z, y)`` in eval mode (BN running statistics), mapped to [0, 1]: N x C x H x W. In batches of 250:
        the activations stay in the CPU's caches (1.3 times faster than 4,000 at once, the same pixels bit for bit)."""
        was_training = self.generator.training
        self.generator.eval()
        parts = [self.generator(z[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
                 for i in range(0, len(z), batch_size)] or [self.generator(z, labels)]  # N = 0: one empty batch
        self.generator.train(was_training)
        return data.denormalize(torch.cat(parts))

    @torch.no_grad()
    def discriminator_features(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Discriminator features (N x ``cfg.features``) of float images in [0, 1], eval mode, batched."""
        self.discriminator.eval()
        x = data.normalize(data.as_batch(images, self.cfg.image))
        return torch.cat([self.discriminator.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def truncated_normal(u: Tensor, threshold: float) -> Tensor:
    """N(0, 1) truncated to ``[-threshold, threshold]`` from uniform ``u`` in (0, 1), by the inverse CDF:
    ``Phi^-1(Phi(-t) + u (Phi(t) - Phi(-t)))``. Exact and without rejection loops, so the same ``u`` always gives
    the same ``z``; values beyond ``t`` are redrawn inside, not clipped to the edge (clipping would pile mass at
    ``+-t``). Chapter 02 (notebooks/02_gan.ipynb), the truncation trick (Brock et al. 2019).
    """
    if not threshold > 0:
        raise ValueError(f"the truncation threshold must be > 0, not {threshold}")
    u = u.double()
    t = torch.tensor(float(threshold), dtype=torch.float64)
    low, high = torch.special.ndtr(-t), torch.special.ndtr(t)
    return torch.special.ndtri(low + u * (high - low)).clamp(-t, t)


def truncated_noise(n: int, latent_dim: int, threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """``n`` x ``latent_dim`` noise vectors with entries from N(0, 1) truncated to ``[-threshold, threshold]``.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    u = torch.rand(n, latent_dim, generator=generator, dtype=torch.float64)
    return truncated_normal(u, threshold).float()


@torch.no_grad()
def recompute_batchnorm(g: Generator, n_batches: int, batch_size: int, generator: torch.Generator) -> None:
    """Replace the generator's BN running statistics by exact averages over fresh noise batches.

    An exponential moving average of G's weights (the EMA generator) never ran a forward pass itself, so the
    running means and variances it inherits belong to other weights; in eval mode those mismatched statistics
    shift and scale every feature map. Here every BN layer is reset and re-estimated with ``momentum=None``
    (a cumulative average) from ``n_batches`` batches of ``z`` (and random labels, every column, if conditional).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    layers = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    was_training = g.training
    g.train()
    for _ in range(n_batches):
        z = torch.randn(batch_size, g.cfg.latent_dim, generator=generator)
        g(z, random_labels(g.cfg, batch_size, generator))
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    g.train(was_training)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta`` for every parameter (not the BN buffers).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)
