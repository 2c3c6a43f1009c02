"""Exercise checkers of chapter 06 (product search, §2.4 item 3): two ranking measures the notebook does not
compute (reciprocal rank, NDCG@k) and exact search over a sharded catalogue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from prodlab import search
from prodlab.exercises.core import ExerciseFailed, call, verdict


def _ranked_lists() -> tuple[Tensor, Tensor]:
    """Six ranked result lists of 10 (True: relevant) and each query's number of relevant catalogue items."""
    relevant = torch.rand(6, 10, generator=torch.Generator().manual_seed(6)) < 0.5
    relevant[0] = True  # a perfect list
    relevant[1] = False  # nothing found
    relevant[2] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=torch.bool)  # found last
    relevant[3] = torch.tensor([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=torch.bool)  # first found at rank 2
    return relevant, torch.tensor([12, 4, 1, 3, 20, 7])


def check_reciprocal_rank(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 06.1: ``reciprocal_rank(relevant)``, per query 1 / (rank of the first relevant result), 0 when the
    list holds none; its mean over the queries is the mean reciprocal rank (MRR). As
    :func:`prodlab.search.reciprocal_rank`."""
    title = "reciprocal rank"
    relevant, _ = _ranked_lists()
    want = search.reciprocal_rank(relevant)
    rel = relevant.float()
    mistakes = {
        "a list without any relevant result scores 0: argmax of an all-False row is 0, so check relevant.any(1).":
            1.0 / (rel.argmax(1) + 1),
        "that is the share of relevant results: the reciprocal rank looks only at the first relevant one.":
            rel.mean(1),
        "one number for all queries: return one value per query (the MRR is their mean, taken afterwards).":
            want.mean(),
    }
    got = call(title, fn, relevant.clone())
    verdict(title, got, want, mistakes, "ranks count from 1: rank = relevant.float().argmax(1) + 1, then 1 / rank.")


def check_ndcg(fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    """Exercise 06.2: ``ndcg(relevant, n_relevant, k)``, per query DCG@k / IDCG@k with gains 0 or 1 and the
    discount 1 / log2(i + 1) of rank i (from 1); the ideal list has min(k, R) relevant results first. As
    :func:`prodlab.search.ndcg_at_k`."""
    title = "NDCG@k"
    relevant, n_relevant = _ranked_lists()
    k = relevant.shape[1]
    want = search.ndcg_at_k(relevant, n_relevant, k)
    discount = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (relevant.double() * discount).sum(1)
    mistakes = {
        "that is DCG alone: divide by the DCG of the ideal list, so a perfect list scores 1.": dcg,
        "the ideal list holds min(k, R) relevant results, not k: a query with R < k can still score 1.":
            dcg / discount.sum(),
        "that is AP@k, not NDCG: discount rank i by 1 / log2(i + 1).":
            search.average_precision_at_k(relevant, n_relevant, k).double(),
    }
    got = call(title, fn, relevant.clone(), n_relevant.clone(), k)
    verdict(title, got, want, mistakes, "rank i (from 1) weighs 1 / log2(i + 1); rank 1 weighs 1.")


def _shards() -> tuple[Tensor, list[Tensor]]:
    """Seeded unit queries (8 x 16) and a catalogue of 900 unit vectors cut into shards of unequal size."""
    gen = torch.Generator().manual_seed(7)
    vectors = torch.nn.functional.normalize(torch.randn(900, 16, generator=gen), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(8, 16, generator=gen), dim=1)
    return queries, list(vectors.split([400, 300, 200]))


def check_sharded_top_k(fn: Callable[[Tensor, Sequence[Tensor], int], tuple[Tensor, Tensor]]) -> None:
    """Exercise 06.3: ``sharded_top_k(queries, shards, k)`` -> (scores, ids), both M x k best first: the exact top-k
    over the catalogue ``torch.cat(shards)`` (unit rows; ids are rows of that whole catalogue), found from each
    shard's own top-k, as a search service that splits its catalogue over machines does
    (:func:`prodlab.search.sharded_search`)."""
    title = "sharded top-k"
    queries, shards = _shards()
    k = 5
    whole = torch.cat(shards)
    want_scores, want_ids = search.Index.build("exercise", "-", whole, torch.zeros(len(whole))).search(queries, k)
    got = call(title, fn, queries.clone(), [s.clone() for s in shards], k)
    if not isinstance(got, tuple) or len(got) != 2:
        raise ExerciseFailed(f"{title}: return a pair (scores, ids), got {type(got).__name__}")
    scores, ids = (torch.as_tensor(t) for t in got)
    first = (queries @ shards[0].T).topk(k, dim=1).indices
    if ids.shape == want_ids.shape and torch.equal(ids.long(), first):
        raise ExerciseFailed(f"{title}: that is the first shard's top-k: merge every shard's top-k, then keep the "
                             "k best of those.")
    local = torch.cat([(queries @ s.T).topk(k, dim=1).indices for s in shards], dim=1)
    if ids.shape == want_ids.shape and all(i in row for row, r in zip(local.tolist(), ids.tolist(), strict=True)
                                           for i in r) and not torch.equal(ids.long(), want_ids):
        raise ExerciseFailed(f"{title}: those are row numbers within a shard: add the shard's offset (the sizes "
                             "of the shards before it) to make them ids of the whole catalogue.")
    verdict(f"{title} (ids)", ids.long(), want_ids, {}, "per shard topk(k), ids + offset, concatenate, topk(k) again.")
    verdict(f"{title} (scores)", scores, want_scores, {}, "the scores are the cosines q @ shard.T of the kept results.")
