"""Chapter 06's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prodlab import exercises


def precision_at_k(relevant, k):
    return relevant[:, :k].float().mean(1)


def average_precision(relevant, n_relevant, k):
    rel = relevant[:, :k].float()
    precision = rel.cumsum(1) / torch.arange(1, k + 1)
    return (precision * rel).sum(1) / n_relevant.clamp(max=k).float()


def cosine_top_k(queries, vectors, k):
    return (F.normalize(queries, dim=1) @ F.normalize(vectors, dim=1).T).topk(k, dim=1)


CASES = {
    exercises.check_precision_at_k: (
        precision_at_k,
        [(lambda rel, k: rel[:, :k].float().sum(1), "divide by k"),
         (lambda rel, k: rel.float().mean(1), "first k"),
         (lambda rel, k: rel[:, :k].float().mean(), "one precision per query")],
    ),
    exercises.check_average_precision: (
        average_precision,
        [(lambda rel, n, k: (rel.float().cumsum(1) / torch.arange(1, k + 1)).mean(1), "multiply by rel_i"),
         (lambda rel, n, k: average_precision(rel, torch.full_like(n, k), k), "divides by k"),
         (lambda rel, n, k: average_precision(rel, n, k) * n.clamp(max=k) / n, "divides by R")],
    ),
    exercises.check_cosine_top_k: (
        cosine_top_k,
        [(lambda q, v, k: (q @ v.T).topk(k, dim=1), "normalise"),
         (lambda q, v, k: cosine_top_k(q, v, k)[1], "pair"),
         (lambda q, v, k: (F.normalize(q, dim=1) @ F.normalize(v, dim=1).T).topk(k, dim=1, largest=False),
          "least similar")],
    ),
}
