"""Exercise checkers of chapter 10 (text to product, beyond the article): zero-shot reading with CLIP, masked
cross-attention, and the CLIP score."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from prodlab.exercises.core import call, verdict


def check_zero_shot(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 1: ``fn(images, captions, combos)`` (unit image embeddings N x D, unit caption embeddings M x D, the
    combination of each caption M x 3) must return each image's reading N x 3: the combination of its most similar
    caption (what ``training.clip.image_to_text`` reads)."""
    g = torch.Generator().manual_seed(1)
    images = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    captions = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    combos = torch.randint(0, 4, (5, 3), generator=g)
    sims = images @ captions.T
    got = call("zero-shot reading", fn, images.clone(), captions.clone(), combos.clone())
    verdict("zero-shot reading", got, combos[sims.argmax(1)],
            {"that is the least similar caption: the cosine is a similarity, take the largest.":
             combos[sims.argmin(1)]},
            "similarities are images @ captions.T; each image takes the row of combos of its best caption.")


def check_masked_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                           ) -> None:
    """Exercise 2: ``fn(q, k, v, padding)`` (N x P x d queries, N x L x d keys and values, padding bool N x L, True
    where a token is padding) must return single-head attention ``softmax(q k^T / sqrt(d)) v`` that gives padding no
    weight (``torch.nn.functional.scaled_dot_product_attention`` with the mask)."""
    g = torch.Generator().manual_seed(2)
    q, k, v = torch.randn(2, 5, 4, generator=g), torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    padding = torch.tensor([[False, False, True], [False, True, True]])
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=~padding[:, None, :])
    unmasked = F.scaled_dot_product_attention(q, k, v)
    unscaled = torch.softmax((q @ k.transpose(1, 2)).masked_fill(padding[:, None, :], float("-inf")), -1) @ v
    got = call("masked attention", fn, q.clone(), k.clone(), v.clone(), padding.clone())
    verdict("masked attention", got, want,
            {"the padding still gets weight: set its scores to -inf before the softmax.": unmasked,
             "divide the scores by sqrt(d) before the softmax.": unscaled},
            "scores = q @ k.transpose(1, 2) / sqrt(d), -inf where padding[:, None, :], softmax over the last axis, "
            "then @ v.", atol=1e-5)


def check_clip_score(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 3: ``fn(image_embeddings, prompt_embeddings)`` (N x D each, not normalised, row i of one belonging to
    row i of the other) must return the CLIP score of each pair, ``100 * max(cos, 0)`` (Hessel et al. 2021, as
    ``training.text_diffusion.clip_score`` computes it)."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 8, generator=g) * 3, torch.randn(6, 8, generator=g)
    cos = F.cosine_similarity(a, b, dim=1)
    got = call("CLIP score", fn, a.clone(), b.clone())
    verdict("CLIP score", got, 100 * cos.clamp_min(0),
            {"normalise both embeddings first: the score is a cosine, not a dot product.":
             100 * (a * b).sum(1).clamp_min(0),
             "negative cosines count as 0 (max(cos, 0)).": 100 * cos,
             "scale by 100.": cos.clamp_min(0)},
            "F.normalize both, sum their products per row, clamp below at 0, times 100.", atol=1e-4)
