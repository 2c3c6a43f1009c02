"""Chapter 06's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import math

import torch

from prodlab import exercises, search


def reciprocal_rank(relevant):
    first = relevant.float().argmax(1) + 1
    return torch.where(relevant.any(1), 1 / first, 0.0)


def ndcg(relevant, n_relevant, k):
    discount = 1 / torch.log2(torch.arange(2, k + 2).float())
    ideal = torch.stack([discount[: min(k, int(r))].sum() for r in n_relevant])
    return (relevant[:, :k].float() * discount).sum(1) / ideal


def ndcg_natural_log(relevant, n_relevant, k):  # the base of the logarithm cancels in the ratio
    discount = 1 / torch.log(torch.arange(2, k + 2).float())
    ideal = torch.stack([discount[: min(k, int(r))].sum() for r in n_relevant])
    return (relevant[:, :k].float() * discount).sum(1) / ideal


def sharded_top_k(queries, shards, k):
    found, offset = [], 0
    for shard in shards:
        scores, ids = (queries @ shard.T).topk(k, dim=1)
        found.append((scores, ids + offset))
        offset += len(shard)
    scores, ids = torch.cat([s for s, _ in found], 1), torch.cat([i for _, i in found], 1)
    best, where = scores.topk(k, dim=1)
    return best, ids.gather(1, where)


def sharded_without_offset(queries, shards, k):
    scores = torch.cat([(queries @ s.T).topk(k, dim=1).values for s in shards], 1)
    ids = torch.cat([(queries @ s.T).topk(k, dim=1).indices for s in shards], 1)
    best, where = scores.topk(k, dim=1)
    return best, ids.gather(1, where)


def sharded_share_of_k(queries, shards, k):  # k / (number of shards) from each shard: not exact
    per = math.ceil(k / len(shards))
    return sharded_top_k(queries, shards, per)[0].repeat(1, len(shards))[:, :k], sharded_top_k(queries, shards, k)[1]


CASES = {
    exercises.check_reciprocal_rank: (
        reciprocal_rank,
        [(lambda rel: 1 / (rel.float().argmax(1) + 1), "any(1)"),
         (lambda rel: 1 / rel.float().argmax(1), "inf"),
         (lambda rel: rel.float().mean(1), "first relevant"),
         (lambda rel: reciprocal_rank(rel).mean(), "one value per query")],
    ),
    exercises.check_ndcg: (
        ndcg,
        [(lambda rel, n, k: (rel[:, :k].float() / torch.log2(torch.arange(2, k + 2).float())).sum(1), "ideal"),
         (lambda rel, n, k: ndcg(rel, torch.full_like(n, k), k), "min(k, R)"),
         (lambda rel, n, k: ndcg(rel, n, k).mean(), "shape"),
         (lambda rel, n, k: search.average_precision_at_k(rel, n, k), "AP@k"),
         (lambda rel, n, k: (rel[:, :k].float() / torch.log2(torch.arange(1, k + 1).float())).sum(1), "inf")],
    ),
    exercises.check_sharded_top_k: (
        sharded_top_k,
        [(sharded_without_offset, "offset"),
         (lambda q, shards, k: (q @ shards[0].T).topk(k, dim=1), "first shard"),
         (lambda q, shards, k: sharded_top_k(q, shards, k)[1], "pair"),
         (sharded_share_of_k, "scores")],
    ),
}
