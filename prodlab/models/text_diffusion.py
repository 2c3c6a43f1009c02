"""Text to product in miniature (issue 26, notebook 10): a latent diffusion model that draws a product from a prompt,
built like today's text-to-image generators and small enough to train and open on a CPU.

Three parts, as in Stable Diffusion (Rombach et al. 2022), each visible in one place:

* the first stage (``prodlab.models.autoencoder``): photos to a ``C x 8 x 8`` latent grid and back; the denoiser
  works on the grid, standardised per channel (``z_mean``, ``z_std``), and the decoder draws the pixels;
* the text encoder: CLIP in miniature's (``prodlab.models.clip``), frozen, its per-token outputs the *context* the
  denoiser reads; a prompt's padding is masked, its end token always present (the empty prompt is that token alone);
* the denoiser (:class:`LatentUNet`): chapter 08's U-Net on the grid (8 x 8, 4 x 4, 2 x 2 and back), reading the
  prompt in two ways, as Stable Diffusion XL does (Podell et al. 2023): after each of its five stages a
  cross-attention layer (:class:`CrossAttention`) lets every latent position read the prompt's tokens (where the
  words enter, position by position), and the prompt's summary (the end token, which attended to every word) joins
  the time embedding that every residual block adds. Each cross-attention layer starts at zero, so the network
  starts as chapter 08's.

It is chapter 08's flow matching with the prompt's tokens in place of the labels: ``diffusion.diffusion_loss`` drops a
share of the prompts (replaced by the empty prompt) so the same network learns the unconditional prediction, and
classifier-free guidance (``u + w (c - u)``) mixes the two at sampling; a *negative prompt* takes the empty prompt's
place in ``u``, so guidance pushes away from it.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import diffusion, text
from prodlab.datasets import colour
from prodlab.datasets.spec import ImageSpec
from prodlab.models import conditions
from prodlab.models.autoencoder import Autoencoder, AutoencoderConfig
from prodlab.models.clip import CLIPConfig, TextEncoder
from prodlab.models.conditions import Conditioned
from prodlab.models.unet import UNet, check_unet


@dataclass(frozen=True)
class TextDiffusionConfig(Conditioned):
    """Shape of the text-to-product model (what a checkpoint's JSON records as ``config``): its first stage's and its
    text encoder's configs, the denoiser's width (channels on the full latent grid, twice that below) and its
    cross-attention heads, and how it samples.

    ``conditional`` is always true: asked for labels (the common generator interface), it writes their captions.
    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    first_stage: AutoencoderConfig
    text: CLIPConfig
    width: int = 64
    heads: int = 4
    objective: str = "flow"
    sampler: str = "heun"
    steps: int = 6
    guidance: float = 3.0
    conditional: bool = True

    def __post_init__(self) -> None:
        check_unet(self.objective, self.sampler, self.width, self.steps, self.first_stage.latent_shape[1:],
                   "latent grid")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads ({self.heads})")
        if self.first_stage.image != self.text.image or not self.conditional:
            raise ValueError("the first stage and the text encoder must be of the same catalogue, and the model "
                             "conditional")

    @property
    def image(self) -> ImageSpec:
        return self.first_stage.image

    @property
    def tokenizer(self) -> text.Tokenizer:
        return self.text.tokenizer


class CrossAttention(nn.Module):
    """``h += CrossAttn(GroupNorm(h), context)`` on a feature map N x C x h x w: each position's query reads the
    prompt's tokens (padding masked). The output projection starts at zero, so the layer starts as the identity.

    With ``keep_attention`` set, the weights (the mean over heads, N x tokens x h x w) are kept in ``attention``:
    which positions of the map read which word. Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, channels: int, heads: int, context_width: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=context_width, vdim=context_width, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        self.keep_attention = False
        self.attention: Tensor | None = None

    def forward(self, h: Tensor, context: Tensor, padding: Tensor) -> Tensor:
        n, c, hh, ww = h.shape
        q = self.norm(h).flatten(2).transpose(1, 2)  # one query per position: N x hw x C
        out, weights = self.attn(q, context, context, key_padding_mask=padding, need_weights=self.keep_attention)
        self.attention = weights.transpose(1, 2).unflatten(2, (hh, ww)) if self.keep_attention else None
        return h + out.transpose(1, 2).reshape(n, c, hh, ww)


class LatentUNet(UNet):
    """``f(z_t, t, prompt)``: chapter 08's U-Net (no label tables) on latents N x C x h x w, the prompt's summary
    N x width added to its time embedding through an MLP, a :class:`CrossAttention` to the prompt's tokens after
    each of its five stages. Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: TextDiffusionConfig) -> None:
        super().__init__(cfg.width, 0, cfg.first_stage.latent_channels)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text.width, self.emb_dim), nn.SiLU(),
                                       nn.Linear(self.emb_dim, self.emb_dim))
        self.cross = nn.ModuleList(CrossAttention(c, cfg.heads, cfg.text.width) for c in self.stage_widths)

    def forward(self, z: Tensor, t: Tensor, context: Tensor, padding: Tensor, summary: Tensor) -> Tensor:
        emb = self.embedding(t, None) + self.text_proj(summary)
        return self.levels(z, emb, lambda h, i: self.cross[i](h, context, padding))


class TextDiffusion(nn.Module):
    """The denoiser, a frozen copy of CLIP's text encoder and of the first stage, and the latents' per-channel
    statistics: one checkpoint that draws products from prompts on its own.

    ``sample(n, generator, labels)`` is the common generator interface (labels N x 3 become their captions);
    :meth:`draw` takes prompts in words. Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: TextDiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = LatentUNet(cfg)
        self.text_encoder = TextEncoder(cfg.text).requires_grad_(False)
        self.autoencoder = Autoencoder(cfg.first_stage).requires_grad_(False)
        self.register_buffer("z_mean", torch.zeros(cfg.first_stage.latent_channels, 1, 1))
        self.register_buffer("z_std", torch.ones(cfg.first_stage.latent_channels, 1, 1))

    def context(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The frozen text encoder's per-token features N x L x width, the padding mask (True: ignore) and the
        prompt's summary N x width (the encoder's own: the end token's features for its transformer)."""
        encoder = self.text_encoder.eval()
        with torch.no_grad():
            features = encoder.tokens(tokens)
            return features, ~text.mask(tokens), encoder.summary(features, tokens)

    def forward(self, z: Tensor, t: Tensor, tokens: Tensor | None = None) -> Tensor:
        """The prediction for standardised latents ``z`` at times ``t`` given prompts' ``tokens`` (None: the
        empty prompt)."""
        tokens = self.null_tokens(len(z), z.device) if tokens is None else tokens
        return self.net(z, t, *self.context(tokens))

    def null_tokens(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """The empty prompt (its end token alone), ``n`` times: what prompt dropout trains and guidance subtracts."""
        return self.cfg.tokenizer.encode([""]).to(device).expand(n, -1)

    @torch.no_grad()
    def to_latents(self, images: Tensor) -> Tensor:
        """Standardised latents of images in [0, 1] (what the denoiser learns)."""
        return (self.autoencoder.latents(images) - self.z_mean) / self.z_std

    @torch.no_grad()
    def to_images(self, z: Tensor) -> Tensor:
        """Images in [0, 1] of standardised latents."""
        self.autoencoder.eval()
        return torch.cat([self.autoencoder.decode(b * self.z_std + self.z_mean) for b in z.split(500)])

    def captions(self, labels: Tensor) -> list[str]:
        """The catalogue's caption of each request N x 3 (class, colour, pattern)."""
        return colour.captions(self.cfg.image, labels[:, 0], labels[:, 1:])

    @torch.no_grad()
    def draw(self, prompts: list[str], generator: torch.Generator | None = None, negative_prompt: str = "",
             steps: int | None = None, guidance: float | None = None, noise: Tensor | None = None,
             start: float = 1.0) -> Tensor:
        """One product per prompt (float N x C x H x W in [0, 1]), guided away from ``negative_prompt`` (default
        the empty prompt). ``noise`` and ``start`` < 1: integrate from a partly noised latent (SDEdit).
        ``text.UnknownWord`` for a word outside the vocabulary."""
        self.eval()
        tokens = self.cfg.tokenizer.encode(prompts)
        null = tuple(self.cfg.tokenizer.encode([negative_prompt])[0].tolist())
        z = diffusion.sample_trajectory(self, (len(prompts), *self.cfg.first_stage.latent_shape), self.cfg.objective,
                                        self.cfg.sampler, steps or self.cfg.steps, tokens,
                                        self.cfg.guidance if guidance is None else guidance, generator, null,
                                        noise=noise, start=start)[-1]
        return self.to_images(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None,
               steps: int | None = None, guidance: float | None = None) -> Tensor:
        """``n`` products (float N x C x H x W in [0, 1]): each request's caption (labels N x 3), or with no labels
        the unconditional model (the empty prompt, no guidance)."""
        if labels is None:
            return self.draw([""] * n, generator, steps=steps, guidance=1.0)
        return self.draw(self.captions(conditions.check_labels(self.cfg, labels, n)), generator, steps=steps,
                         guidance=guidance)

    @torch.no_grad()
    def cross_attention(self, z: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        """Each stage's cross-attention weights at ``(z, t)`` for ``tokens``, brought to the latent grid (a coarse
        position's weight repeated over the positions it covers, as DAAM does, Tang et al. 2023): stages x N x L x h
        x w, each position's weights summing to one over the tokens."""
        layers, (_, h, w) = list(self.net.cross), self.cfg.first_stage.latent_shape
        for layer in layers:
            layer.keep_attention = True
        try:
            self.eval()(z, t, tokens)
            return torch.stack([F.interpolate(layer.attention, size=(h, w)) for layer in layers])
        finally:
            for layer in layers:
                layer.keep_attention = False
                layer.attention = None
