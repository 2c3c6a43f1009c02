"""Text to product in miniature (issue 26, notebook 10): a latent diffusion model that draws a product from a prompt,
built like today's text-to-image generators and small enough to train and open on a CPU.

Three parts, as in Stable Diffusion (Rombach et al. 2022), each visible in one place:

* the first stage (``prodlab.models.autoencoder``): photos to a ``C x 8 x 8`` latent grid and back; the denoiser
  works on the grid, standardised per channel (``z_mean``, ``z_std``), and the decoder draws the pixels;
* the text encoder: CLIP in miniature's (``prodlab.models.clip``), frozen, its per-token outputs the *context* the
  denoiser reads; a prompt's padding is masked, its end token always present (the empty prompt is that token alone);
* the denoiser (:class:`LatentTransformer`): a small diffusion transformer (DiT, Peebles & Xie 2023) over the grid's
  positions, one token each. Every block has self-attention between positions, cross-attention from each position
  to the prompt's tokens (where the words enter), and an MLP; the time enters by adaptive layer norm (DiT's adaLN:
  a shift, a scale and a gate per sub-layer computed from the time embedding, started at zero so that each block
  starts as the identity).

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
from prodlab.models.unet import timestep_embedding


@dataclass(frozen=True)
class TextDiffusionConfig(Conditioned):
    """Shape of the text-to-product model (what a checkpoint's JSON records as ``config``): its first stage's and its
    text encoder's configs, the denoiser's width, depth and heads, and how it samples.

    ``conditional`` is always true: asked for labels (the common generator interface), it writes their captions.
    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    first_stage: AutoencoderConfig
    text: CLIPConfig
    width: int = 128
    depth: int = 4
    heads: int = 4
    objective: str = "flow"
    sampler: str = "heun"
    steps: int = 6
    guidance: float = 3.0
    conditional: bool = True

    def __post_init__(self) -> None:
        if self.sampler not in diffusion.SAMPLERS.get(self.objective, ()):
            raise ValueError(f"sampler {self.sampler!r} does not fit objective {self.objective!r}")
        if self.width % self.heads or self.depth < 1 or self.steps < 1:
            raise ValueError("width must be divisible by heads, depth and steps at least 1")
        if self.first_stage.image != self.text.image or not self.conditional:
            raise ValueError("the first stage and the text encoder must be of the same catalogue, and the model "
                             "conditional")

    @property
    def image(self) -> ImageSpec:
        return self.first_stage.image

    @property
    def tokenizer(self) -> text.Tokenizer:
        return self.text.tokenizer


class Block(nn.Module):
    """One DiT block with cross-attention: ``h += gate * SelfAttn(modulate(LN(h)))``, ``h += CrossAttn(LN(h),
    context)``, ``h += gate * MLP(modulate(LN(h)))``; shift, scale and gate come from the time embedding.

    With ``keep_attention`` set, the cross-attention weights (N x positions x tokens, the mean over heads) are kept
    in ``attention``: which latent positions read which word. Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, width: int, heads: int, context_width: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width, elementwise_affine=False) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, kdim=context_width, vdim=context_width,
                                                batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.keep_attention = False
        self.attention: Tensor | None = None

    def forward(self, h: Tensor, emb: Tensor, context: Tensor, padding: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(emb))[:, None].chunk(6, dim=-1)
        x = self.norm1(h) * (1 + scale1) + shift1
        h = h + gate1 * self.self_attn(x, x, x, need_weights=False)[0]
        out, weights = self.cross_attn(self.norm2(h), context, context, key_padding_mask=padding,
                                       need_weights=self.keep_attention)
        self.attention = weights if self.keep_attention else None
        h = h + out
        return h + gate2 * self.mlp(self.norm3(h) * (1 + scale2) + shift2)


class LatentTransformer(nn.Module):
    """``f(z_t, t, context)``: latents N x C x h x w -> one token per position (a linear map of its C numbers plus a
    learned position embedding) -> :class:`Block` s -> the prediction N x C x h x w (final layer started at zero).

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: TextDiffusionConfig) -> None:
        super().__init__()
        c, h, w = cfg.first_stage.latent_shape
        self.width = cfg.width
        self.inp = nn.Linear(c, cfg.width)
        self.position = nn.Parameter(torch.randn(h * w, cfg.width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.text.width) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(cfg.width, elementwise_affine=False)
        self.out = nn.Linear(cfg.width, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: Tensor, t: Tensor, context: Tensor, padding: Tensor) -> Tensor:
        n, c, hh, ww = z.shape
        h = self.inp(z.flatten(2).transpose(1, 2)) + self.position
        emb = self.time_mlp(timestep_embedding(t, self.width))
        for block in self.blocks:
            h = block(h, emb, context, padding)
        return self.out(self.norm_out(h)).transpose(1, 2).reshape(n, c, hh, ww)


class TextDiffusion(nn.Module):
    """The denoiser, a frozen copy of CLIP's text encoder and of the first stage, and the latents' per-channel
    statistics: one checkpoint that draws products from prompts on its own.

    ``sample(n, generator, labels)`` is the common generator interface (labels N x 3 become their captions);
    :meth:`draw` takes prompts in words. Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: TextDiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = LatentTransformer(cfg)
        self.text_encoder = TextEncoder(cfg.text).requires_grad_(False)
        self.autoencoder = Autoencoder(cfg.first_stage).requires_grad_(False)
        self.register_buffer("z_mean", torch.zeros(cfg.first_stage.latent_channels, 1, 1))
        self.register_buffer("z_std", torch.ones(cfg.first_stage.latent_channels, 1, 1))

    def context(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """The frozen text encoder's per-token features N x L x width and the padding mask (True: ignore)."""
        with torch.no_grad():
            return self.text_encoder.eval().tokens(tokens), ~text.mask(tokens)

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
        """Every block's cross-attention weights at ``(z, t)`` for ``tokens``: depth x N x positions x L."""
        blocks = list(self.net.blocks)
        for block in blocks:
            block.keep_attention = True
        try:
            self.eval()(z, t, tokens)
            return torch.stack([block.attention for block in blocks])
        finally:
            for block in blocks:
                block.keep_attention = False
                block.attention = None
