"""CLIP in miniature (issue 26, notebook 10): a text encoder and an image encoder that map a caption and a product
photo into one space, where a caption lies near the photos it describes (Radford et al. 2021).

* Text: a prompt's tokens (``prodlab.text``) -> word and position embeddings -> a small transformer encoder (or, with
  ``text_encoder="bag"``, the mean of the word embeddings: no word order, no context) -> the summary read at the end
  token -> a linear projection. The transformer's per-token outputs are what a text-conditioned generator attends to.
* Image: chapter 04's residual GroupNorm encoder (``prodlab.models.encoder``), its projection head mapping into the
  shared space. Trained here with captions, not with SimCLR's views: another model of the same architecture.
* Both embeddings are L2-normalised; the similarity of an image and a text is their cosine times a learned scale
  ``exp(log_scale)``, 1 / temperature, started at 1 / 0.07 and kept at most 100 as in CLIP.

The loss (:func:`clip_loss`) is the symmetric cross-entropy over the batch's image-text similarity matrix. The
catalogue has a few hundred distinct captions, so a batch often holds two products with the same caption; those pairs
are both positives (the targets are spread over every matching caption), not negatives to push apart.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import text
from prodlab.datasets.spec import ImageSpec
from prodlab.models.encoder import ContrastiveEncoder, EncoderConfig

TEXT_ENCODERS = ("transformer", "bag")
MAX_SCALE = 100.0  # CLIP clips the logit scale at 100 (a temperature of 0.01)


@dataclass(frozen=True)
class CLIPConfig:
    """Shape of the text-image model (what a checkpoint's JSON records as ``config``): the image spec, the tokenizer
    (its vocabulary and prompt length), the text encoder's kind and size, the image encoder's widths and the
    dimension of the shared space.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    image: ImageSpec
    tokenizer: text.Tokenizer
    text_encoder: str = "transformer"
    width: int = 64  # the text encoder's width (word and position embeddings, transformer layers)
    layers: int = 2
    heads: int = 4
    image_widths: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 64  # the shared space
    temperature: float = 0.07  # where the learned temperature starts

    def __post_init__(self) -> None:
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}, not {self.text_encoder!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")


class TextEncoder(nn.Module):
    """Tokens N x L -> per-token features N x L x width (:meth:`tokens`) and the prompt's embedding N x embed_dim.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(cfg.tokenizer.size, cfg.width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(cfg.tokenizer.length, cfg.width) * 0.01)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.transformer = (nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
                            if cfg.text_encoder == "transformer" else None)
        self.norm = nn.LayerNorm(cfg.width)
        self.project = nn.Linear(cfg.width, cfg.embed_dim, bias=False)

    def tokens(self, tokens: Tensor) -> Tensor:
        """Per-token features N x L x width: the transformer's output (each token has read the whole prompt), or
        the word embeddings themselves for the bag of words. Padding positions are zero."""
        keep = text.mask(tokens)
        h = self.words(tokens)
        if self.transformer is not None:
            h = self.transformer(h + self.positions, src_key_padding_mask=~keep)
        return self.norm(h) * keep[..., None]

    def summary(self, h: Tensor, tokens: Tensor) -> Tensor:
        """The prompts' summaries N x width of their per-token features ``h`` (:meth:`tokens`): the end token's
        features for the transformer, the mean over the words for the bag."""
        if self.transformer is not None:
            return h[torch.arange(len(tokens)), text.end_positions(tokens)]
        words = (tokens > 1)[..., None]  # the words, not the end token
        return (h * words).sum(1) / words.sum(1).clamp_min(1)

    def forward(self, tokens: Tensor) -> Tensor:
        """The prompts' embeddings N x embed_dim (not normalised): the projection of their :meth:`summary`."""
        return self.project(self.summary(self.tokens(tokens), tokens))


class CLIP(nn.Module):
    """The text encoder, the image encoder and the learned logit scale.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_encoder = TextEncoder(cfg)
        self.image_encoder = ContrastiveEncoder(EncoderConfig(cfg.image, cfg.image_widths,
                                                              projection_dim=cfg.embed_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))

    @property
    def scale(self) -> Tensor:
        """1 / temperature, at most :data:`MAX_SCALE`."""
        return self.log_scale.clamp(max=math.log(MAX_SCALE)).exp()

    def embed_images(self, images: Tensor | np.ndarray) -> Tensor:
        """Unit vectors N x embed_dim of images in any form ``data.as_batch`` accepts."""
        return F.normalize(self.image_encoder(images), dim=1)

    def embed_texts(self, tokens: Tensor) -> Tensor:
        """Unit vectors N x embed_dim of tokenised prompts (``cfg.tokenizer.encode``)."""
        return F.normalize(self.text_encoder(tokens), dim=1)

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        """The similarity logits N_images x N_texts: scaled cosines (one call, so that DDP sees one forward)."""
        return self.scale * self.embed_images(images) @ self.embed_texts(tokens).T

    @torch.no_grad()
    def encode_images(self, images: Tensor | np.ndarray, batch_size: int = 500) -> Tensor:
        """:meth:`embed_images` of many images, in batches, without gradients, on the CPU."""
        return torch.cat([self.embed_images(images[i : i + batch_size]).cpu()
                          for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """Unit vectors of prompts in words (``text.UnknownWord`` for a word outside the vocabulary)."""
        return self.embed_texts(self.cfg.tokenizer.encode(prompts))


def clip_loss(logits: Tensor, same: Tensor | None = None) -> Tensor:
    """The symmetric InfoNCE loss of CLIP on the N x N similarity logits of N (image, caption) pairs: the mean of
    the cross-entropy of each image over the captions and of each caption over the images.

    ``same`` (bool N x N): which pairs share a caption. Each row's target is then spread evenly over its matches
    instead of sitting on the diagonal alone; without it, or when every caption differs, this is CLIP's loss.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """
    same = torch.eye(len(logits), dtype=torch.bool, device=logits.device) if same is None else same
    targets = same.float() / same.sum(1, keepdim=True)  # symmetric: "the same caption" is an equivalence
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
