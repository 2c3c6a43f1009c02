"""Chapter 10's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prodlab import exercises


def zero_shot(images, captions, combos):
    return combos[(images @ captions.T).argmax(1)]


def masked_attention(q, k, v, padding):
    scores = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(padding[:, None, :], float("-inf"))
    return scores.softmax(-1) @ v


def clip_score(a, b):
    return 100 * (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1).clamp_min(0)


CASES = {
    exercises.check_zero_shot: (
        zero_shot,
        [(lambda i, c, m: m[(i @ c.T).argmin(1)], "least similar"),
         (lambda i, c, m: m[(i @ c.T).argmax(1)] + 1, "wrong values")],
    ),
    exercises.check_masked_attention: (
        masked_attention,
        [(lambda q, k, v, p: (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1) @ v, "-inf"),
         (lambda q, k, v, p: (q @ k.transpose(1, 2)).masked_fill(p[:, None, :], float("-inf")).softmax(-1) @ v,
          "sqrt(d)"),
         (lambda q, k, v, p: masked_attention(q, k, v, p)[:, :1], "shape")],
    ),
    exercises.check_clip_score: (
        clip_score,
        [(lambda a, b: 100 * (a * b).sum(1).clamp_min(0), "normalise"),
         (lambda a, b: 100 * F.cosine_similarity(a, b, dim=1), "max(cos, 0)"),
         (lambda a, b: clip_score(a, b) / 100, "100"),
         (lambda a, b: torch.zeros(len(a)), "wrong values")],
    ),
}
