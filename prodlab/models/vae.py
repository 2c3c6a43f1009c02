"""Variational autoencoders for product images (article §2.3, §3.2), and how well they explain test images.

Two models share one interface (``encode``, ``reparameterize``, ``decode_logits``, ``sample``):

* :class:`ConvVAE`, the workbook's VAE (shipped as ``vae`` with a 16-dimensional latent, ``vae2d`` with a
  2-dimensional one, and ``vae-sharp``, the ``vae`` trained with beta = 0.25 for chapter 08's latent prior).
  Encoder: stride-2 4x4 convolutions (one per entry of ``channels``; for Fashion-MNIST C -> 32 -> 64 channels,
  28 -> 14 -> 7 pixels), a hidden layer and two
  linear heads, the mean ``mu`` and the log-variance ``log sigma^2`` of ``q(z|x)``
  (§3.2.2 step 2). Decoder: the mirror image with transposed convolutions, ending in one **logit** per pixel.
* :class:`ReferenceMLPVAE`, the VAE of the PyTorch examples repository (``examples/vae/main.py``): pixels-400-20
  MLP with ReLU (784-400-20 for Fashion-MNIST), the yardstick the shipped ``vae`` must beat on test negative ELBO.

Decoder output. The decoder returns logits ``l``; ``sigmoid(l)`` is the decoded image in [0, 1]. With the
Bernoulli likelihood it is the mean of ``p(x|z)`` and ``-log p(x|z)`` is the binary cross-entropy on the logits
(stable); with the article's MSE it is the Gaussian decoder's mean. The reference example applies ``sigmoid``
inside the decoder and ``F.binary_cross_entropy`` on probabilities: the same model, computed less stably.

The last section measures a trained VAE on test images (what ``python -m prodlab evaluate vae`` reports):
the negative ELBO with the Bernoulli likelihood, an importance-weighted bound on ``-log p(x)`` (IWAE), the
reconstruction PSNR, and the KL per latent dimension that reveals unused ("collapsed") dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import losses
from prodlab.datasets.spec import ImageSpec

ACTIVE_KL = 0.01  # nats: a latent dimension whose average KL to the prior is below this carries no information


class VAE(nn.Module):
    """What every VAE here does, given ``encode`` (x -> mu, logvar) and ``decode_logits`` (z -> pixel logits).

    Chapter 03 (notebooks/03_vae.ipynb).
    """

    cfg: object

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """§3.2.2 step 2: the mean and log-variance of ``q(z|x)``, each N x latent_dim."""
        raise NotImplementedError

    def decode_logits(self, z: Tensor) -> Tensor:
        """§3.2.2 step 4: pixel logits N x C x H x W (``sigmoid`` of them is the decoded image)."""
        raise NotImplementedError

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """§3.2.2 step 3: ``z = mu + sigma * eps`` with ``eps ~ N(0, I)``.

        The randomness sits in ``eps``, outside the network, so ``z`` is a differentiable function of ``mu`` and
        ``sigma`` and the loss can be backpropagated into the encoder (Kingma & Welling 2014, §2.4).
        """
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + (0.5 * logvar).exp() * eps

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Steps 2-4 at once: ``(logits, mu, logvar)`` for a batch, with one sampled ``z`` per image."""
        mu, logvar = self.encode(x)
        return self.decode_logits(self.reparameterize(mu, logvar, generator)), mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes -> decoded images in [0, 1] (the mean of ``p(x|z)``)."""
        return torch.sigmoid(self.decode_logits(z))

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """The posterior means ``mu(x)`` of a batch of images, in eval mode (the deterministic code of a product)."""
        self.eval()
        return torch.cat([self.encode(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def reconstruct(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """Decode the posterior mean of each image: the deterministic reconstruction, in [0, 1]."""
        return torch.cat([self.decode(z) for z in self.embed(x, batch_size).split(batch_size)])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """§3.2.2 step 8: decode ``z ~ p(z) = N(0, I)`` into ``n`` new products (float N x C x H x W in [0, 1]).

        ``labels`` is accepted for the common generator interface and must be None (the VAE is unconditional).
        """
        if labels is not None:
            raise ValueError("this VAE is unconditional: sample() takes no labels")
        self.eval()
        return self.decode(torch.randn(n, self.latent_dim, generator=generator))


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the convolutional VAE (what a checkpoint's JSON records as ``config``), for images of ``image``.

    Chapter 03 (notebooks/03_vae.ipynb).
    """

    image: ImageSpec
    latent_dim: int = 16
    channels: tuple[int, ...] = (32, 64)  # one stride-2 encoder convolution each (the decoder mirrors them)
    hidden: int = 256  # fully connected layer between the last feature map (64 x 7 x 7 at 28 px) and the latent

    @property
    def bottom(self) -> tuple[int, int, int]:
        """The last feature map, ``(channels, height, width)``: each convolution halves the image's sides."""
        k = len(self.channels)
        if self.image.height % 2**k or self.image.width % 2**k:
            raise ValueError(f"{k} halvings need image sides divisible by {2**k}, not {self.image.height} x "
                             f"{self.image.width}: give channels one entry per halving")
        return self.channels[-1], self.image.height // 2**k, self.image.width // 2**k


class ConvVAE(VAE):
    """Convolutional VAE over float images N x C x H x W in [0, 1].

    Chapter 03 (notebooks/03_vae.ipynb).
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ladder = (cfg.image.channels, *cfg.channels)  # 1 -> 32 -> 64 for Fashion-MNIST
        flat = math.prod(cfg.bottom)
        down: list[nn.Module] = []
        for c_in, c_out in zip(ladder[:-1], ladder[1:], strict=True):  # 28 -> 14 -> 7
            down += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, cfg.hidden), nn.ReLU())
        self.to_mu = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.to_logvar = nn.Linear(cfg.hidden, cfg.latent_dim)
        up: list[nn.Module] = [nn.Linear(cfg.latent_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, flat), nn.ReLU(),
                               nn.Unflatten(1, cfg.bottom)]
        for c_in, c_out in zip(ladder[:0:-1], ladder[-2::-1], strict=True):  # 7 -> 14 -> 28, logits last
            up += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(*up[:-1])  # no ReLU after the last: it outputs logits

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)


@dataclass(frozen=True)
class ReferenceVAEConfig:
    """The PyTorch example VAE: pixels -> 400 -> (20, 20) -> 400 -> pixels, ReLU (784 pixels for Fashion-MNIST).

    Chapter 03 (notebooks/03_vae.ipynb).
    """

    image: ImageSpec
    latent_dim: int = 20
    hidden: int = 400


class ReferenceMLPVAE(VAE):
    """The VAE of the PyTorch examples repository (``examples/vae/main.py``), as the baseline to beat.

    Chapter 03 (notebooks/03_vae.ipynb).
    """

    def __init__(self, cfg: ReferenceVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pixels = cfg.image.num_pixels
        self.fc1 = nn.Linear(pixels, cfg.hidden)
        self.fc21 = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.fc22 = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.fc3 = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.fc4 = nn.Linear(cfg.hidden, pixels)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc21(h), self.fc22(h)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.fc4(F.relu(self.fc3(z))).reshape(len(z), *self.cfg.image.shape)


@dataclass(frozen=True)
class AutoencoderConfig(VAEConfig):
    """Shape of :class:`ConvAutoencoder`: the same fields as the VAE's, a distinct type so ``build_vae`` (and the
    training loop) builds the plain autoencoder. Chapter 03 (notebooks/03_vae.ipynb)."""


class ConvAutoencoder(ConvVAE):
    """A plain autoencoder with :class:`ConvVAE`'s layers: the code is the point ``z = mu(x)``, no noise, no KL.

    Why the KL term (chapter 03, §2.3): nothing ties this encoder's codes to ``N(0, I)``, so decoding
    ``z ~ N(0, I)`` (``sample``) lands where the decoder never learned to decode. It keeps the VAE interface so
    ``vae_step`` trains it with ``beta = 0``: ``encode`` returns a zero log-variance as a placeholder that never
    reaches the loss (``reparameterize`` ignores it and draws nothing), and the unused ``to_logvar`` head is
    removed after construction, so the initial weights equal a ConvVAE's of the same seed.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__(cfg)
        self.to_logvar = None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.to_mu(self.encoder(x))
        return mu, torch.zeros_like(mu)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """No sampling: the code is the encoder's output itself."""
        return mu


def build_vae(cfg: VAEConfig | ReferenceVAEConfig) -> VAE:
    """§3.2.2 step 1: a freshly initialised VAE for a config (PyTorch's default initialisation); an
    :class:`AutoencoderConfig` gives the plain autoencoder. Chapter 03 (notebooks/03_vae.ipynb).
    """
    if isinstance(cfg, ReferenceVAEConfig):
        return ReferenceMLPVAE(cfg)
    return ConvAutoencoder(cfg) if isinstance(cfg, AutoencoderConfig) else ConvVAE(cfg)


def latent_grid(n: int = 15, tail: float = 0.03) -> tuple[Tensor, Tensor]:
    """``n x n`` points of a 2-d latent space at the prior's quantiles ``tail .. 1 - tail`` (equal prior mass apart).

    Returns the 1-d coordinates (n,) and the points (n*n, 2) row-major, top row = largest ``z2``, left to right
    increasing ``z1``: the layout of an image, so decoding them gives the latent manifold as a mosaic.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    coords = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(tail, 1.0 - tail, n))
    z = torch.stack([coords.repeat(n), coords.flip(0).repeat_interleave(n)], dim=1)
    return coords, z


# ---------------------------------------------------------------- how well a VAE explains test images


def _batches(x: Tensor, batch_size: int) -> list[Tensor]:
    return list(x.split(batch_size))


@torch.no_grad()
def elbo_terms(model: VAE, x: Tensor, seed: int = 0, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    r"""Per-image distortion ``D = -log p(x|z)`` (Bernoulli, one seeded ``z ~ q(z|x)``) and rate ``R = KL``, nats.

    ``D + R`` is the negative ELBO; the pair is the rate-distortion view of a VAE (Alemi et al. 2018): ``beta``
    trades one for the other, and two models with the same ELBO can sit at very different points.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    distortion, rate = [], []
    for xb in _batches(x, batch_size):
        logits, mu, logvar = model(xb, generator)
        distortion.append(losses.reconstruction_bce(logits, xb))
        rate.append(losses.gaussian_kl(mu, logvar))
    return torch.cat(distortion), torch.cat(rate)


def neg_elbo_bernoulli(model: VAE, x: Tensor, seed: int = 0, batch_size: int = 500) -> Tensor:
    r"""Per-image negative ELBO in nats with the Bernoulli likelihood on [0, 1] intensities (§2.3, §4).

    :math:`-\mathrm{ELBO}(x) = -\log p(x|z) + \mathrm{KL}(q(z|x)\,\|\,p(z))` with one ``z ~ q(z|x)`` per image
    (drawn from a generator seeded with ``seed``: deterministic) and the KL in closed form. Averaged over the
    test images this is exactly what the PyTorch VAE example prints as "Test set loss" (BCE summed over the 784
    pixels plus KL). It upper-bounds ``-log p(x)``; lower is better.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    distortion, rate = elbo_terms(model, x, seed, batch_size)
    return distortion + rate


@torch.no_grad()
def log_importance_weights(model: VAE, x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    r"""``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)`` for ``k`` draws ``z_i ~ q(z|x)``: N x k.

    Every ``w_i`` is an unbiased estimate of ``p(x)``; their mean over one draw is the ELBO (in expectation).

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    mu, logvar = model.encode(x)
    eps = torch.randn((len(x), k, mu.shape[1]), generator=generator)
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * eps
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar[:, None] - half_log_2pi).sum(-1)
    log_p_z = (-0.5 * z.pow(2) - half_log_2pi).sum(-1)
    logits = model.decode_logits(z.reshape(len(x) * k, -1))
    log_p_x = -losses.reconstruction_bce(logits, x.repeat_interleave(k, dim=0)).reshape(len(x), k)
    return log_p_x + log_p_z - log_q


@torch.no_grad()
def iwae_nll(model: VAE, x: Tensor, k: int = 100, seed: int = 0, max_decodes: int = 10_000) -> Tensor:
    r"""Per-image importance-weighted estimate of ``-log p(x)`` in nats (Burda et al. 2016, eq. 8).

    :math:`-\log \frac{1}{K}\sum_{i=1}^K w_i`, computed with ``logsumexp`` (the weights themselves underflow:
    ``w`` is about ``e^{-230}``). For ``K = 1`` it is a one-sample negative ELBO; it decreases towards
    ``-log p(x)`` as ``K`` grows (in expectation), so it is a tighter bound than the ELBO. Deterministic (seeded);
    images go through in chunks of at most ``max_decodes / K`` so memory stays bounded.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, max_decodes // k)
    out = [math.log(k) - log_importance_weights(model, xb, k, generator).logsumexp(dim=1)
           for xb in _batches(x, chunk)]
    return torch.cat(out)


@torch.no_grad()
def recon_psnr(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Per-image PSNR in dB of the deterministic reconstruction (decoded posterior mean); higher is better.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    mse = (model.reconstruct(x, batch_size) - x).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def kl_per_dimension(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Average KL(q(z_j|x) || N(0, 1)) of each latent dimension over the images ``x``, in nats (latent_dim,).

    A dimension whose KL stays near 0 has ``q(z_j|x) = p(z_j)`` for every image: the decoder ignores it.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    model.eval()
    total = torch.zeros(model.latent_dim)
    for xb in _batches(x, batch_size):
        mu, logvar = model.encode(xb)
        total += 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(0)
    return total / len(x)


def active_units(kl_per_dim: Tensor, threshold: float = ACTIVE_KL) -> int:
    """How many latent dimensions carry information: average KL to the prior at least ``threshold`` nats.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return int((kl_per_dim >= threshold).sum())


def likelihood_report(model: VAE, x: Tensor, k: int = 100, iwae_images: int = 1000, seed: int = 0) -> dict[str, float]:
    """Test-set numbers of a VAE (nats/image, Bernoulli): negative ELBO with its distortion and rate, the IWAE bound
    on the first ``iwae_images`` images (with the negative ELBO of the same images beside it), PSNR, active units.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    distortion, rate = elbo_terms(model, x, seed)
    neg_elbo = distortion + rate
    kl = kl_per_dimension(model, x)
    return {
        "neg_elbo_bernoulli": float(neg_elbo.mean()),
        "distortion": float(distortion.mean()),
        "rate": float(rate.mean()),
        "iwae_nll": float(iwae_nll(model, x[:iwae_images], k, seed).mean()),
        "neg_elbo_bernoulli_iwae_images": float(neg_elbo[:iwae_images].mean()),
        "iwae_k": k,
        "iwae_images": min(iwae_images, len(x)),
        "recon_psnr": float(recon_psnr(model, x).mean()),
        "active_units": active_units(kl),
        "latent_dim": model.latent_dim,
        "n_test": len(x),
    }

