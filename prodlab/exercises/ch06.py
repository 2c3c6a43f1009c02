"""Exercise checkers of chapter 06 (product search, §2.4 item 3): precision@k, AP@k and cosine top-k by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from prodlab import search
from prodlab.exercises.core import ExerciseFailed, call, verdict


def _ranked_lists() -> tuple[Tensor, Tensor]:
    """Six ranked result lists of 10 (True: relevant) and each query's number of relevant catalogue items."""
    relevant = torch.rand(6, 10, generator=torch.Generator().manual_seed(6)) < 0.5
    relevant[0] = True  # a perfect list
    relevant[1] = False  # nothing found
    relevant[2] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=torch.bool)  # found last
    return relevant, torch.tensor([12, 4, 1, 3, 20, 7])


def check_precision_at_k(fn: Callable[[Tensor, int], Tensor]) -> None:
    """Exercise 06.1: ``precision_at_k(relevant, k)``, per query the share of relevant results among the first
    ``k``, as :func:`prodlab.search.precision_at_k`, for k = 1, 3 and 10."""
    title = "precision@k"
    relevant, _ = _ranked_lists()
    for k in (1, 3, 10):
        want = search.precision_at_k(relevant, k)
        mistakes = {
            "that counts the relevant results: divide by k to get a share.": relevant[:, :k].float().sum(1),
            "that looks at the whole list: keep only the first k results (relevant[:, :k]).":
                relevant.float().mean(1),
            "one number for all queries: return one precision per query (mean over axis 1 only).":
                want.mean(),
        }
        got = call(title, fn, relevant.clone(), k)
        verdict(f"{title} (k = {k})", got, want, mistakes, "P@k = (number of True in relevant[:, :k]) / k, per row.")


def check_average_precision(fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    """Exercise 06.2: ``average_precision(relevant, n_relevant, k)``, AP@k = (1 / min(k, R)) sum_i P@i rel_i per
    query, as :func:`prodlab.search.average_precision_at_k`."""
    title = "AP@k"
    relevant, n_relevant = _ranked_lists()
    k = relevant.shape[1]
    want = search.average_precision_at_k(relevant, n_relevant, k)
    rel = relevant.float()
    precision = rel.cumsum(1) / torch.arange(1, k + 1)
    mistakes = {
        "that averages P@i over every position: only the positions of relevant results count (multiply by rel_i).":
            precision.mean(1),
        "that divides by the relevant results found: divide by min(k, R), so a list that misses some scores less.":
            (precision * rel).sum(1) / rel.sum(1).clamp(min=1),
        "that divides by k: a query with fewer than k relevant items could never reach 1 (divide by min(k, R)).":
            (precision * rel).sum(1) / k,
        "that divides by R: the list has only k places, so divide by min(k, R).":
            (precision * rel).sum(1) / n_relevant.float(),
    }
    got = call(title, fn, relevant.clone(), n_relevant.clone(), k)
    verdict(title, got, want, mistakes, "P@i = cumsum(rel)[i] / i; AP@k = sum(P@i * rel_i) / min(k, R).")


def check_cosine_top_k(fn: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]) -> None:
    """Exercise 06.3: ``cosine_top_k(queries, vectors, k)`` -> (scores, ids), both M x k best first, as
    :meth:`prodlab.search.Index.search` over ``vectors`` (not normalised: the function normalises)."""
    title = "cosine top-k"
    gen = torch.Generator().manual_seed(7)
    vectors = torch.randn(500, 16, generator=gen) * torch.rand(500, 1, generator=gen) * 5  # lengths differ
    queries = torch.randn(8, 16, generator=gen) * 3
    k = 5
    want_scores, want_ids = search.Index.build("exercise", "-", vectors, torch.zeros(500)).search(queries, k)
    got = call(title, fn, queries.clone(), vectors.clone(), k)
    if not isinstance(got, tuple) or len(got) != 2:
        raise ExerciseFailed(f"{title}: return a pair (scores, ids), got {type(got).__name__}")
    scores, ids = (torch.as_tensor(t) for t in got)
    dot_ids = (queries @ vectors.T).topk(k, dim=1).indices
    if ids.shape == want_ids.shape and torch.equal(ids.long(), dot_ids) and not torch.equal(dot_ids, want_ids):
        raise ExerciseFailed(f"{title}: those are the largest dot products; normalise queries and vectors to length "
                             "1 first (F.normalize(x, dim=1)), so long vectors do not win.")
    worst = (F.normalize(queries, dim=1) @ F.normalize(vectors, dim=1).T).topk(k, dim=1, largest=False).indices
    if ids.shape == want_ids.shape and torch.equal(ids.long(), worst):
        raise ExerciseFailed(f"{title}: those are the k least similar: topk keeps the largest by default.")
    verdict(f"{title} (ids)", ids.long(), want_ids, {}, "normalise both, one matrix product q @ V.T, then topk(k).")
    verdict(f"{title} (scores)", scores, want_scores, {}, "the scores are the cosines: the products of unit vectors.")
