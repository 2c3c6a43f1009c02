"""How good a search is (notebook 06, article §2.4 item 3): precision@k, AP@k, mAP, MRR and NDCG, latency, the
benchmark.

Every embedding is judged on one protocol: the queries are test images, the relevant results are the catalogue
items of the query's class, in the catalogue of the same data set. :func:`benchmark` runs it for every embedding
and :func:`format_table` prints it (what ``python -m prodlab bench retrieval`` shows).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prodlab import data
from prodlab.datasets import DEFAULT
from prodlab.search.approx import threads
from prodlab.search.embed import EMBEDDINGS, Embedder, unavailable
from prodlab.search.index import SearchIndex, catalogue_index, query

K_EVAL = 100  # mAP@100 and the precision curve go this deep


def precision_at_k(relevant: Tensor, k: int) -> Tensor:
    """Per query: the fraction of the first ``k`` results that are relevant (``relevant``: bool M x K, K >= k)."""
    return relevant[:, :k].float().mean(1)


def average_precision_at_k(relevant: Tensor, n_relevant: Tensor, k: int = K_EVAL) -> Tensor:
    r"""Per query: :math:`\mathrm{AP@}k = \frac{1}{\min(k, R)}\sum_{i=1}^{k} P@i \cdot \mathrm{rel}_i`.

    ``R`` is how many relevant items the catalogue holds for the query (``n_relevant``, one per query). Dividing
    by ``min(k, R)`` (as Kaggle's and ``ml_metrics``' ``apk`` do) makes AP@k equal to 1 exactly when the first
    ``min(k, R)`` results are all relevant, and penalises a list that finds few of them.
    """
    rel = relevant[:, :k].float()
    precision = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    return (precision * rel).sum(1) / n_relevant.clamp(max=k, min=1).float()


def reciprocal_rank(relevant: Tensor) -> Tensor:
    """Per query: 1 / (rank of the first relevant result), ranks from 1, or 0 when the list holds none; the mean over
    queries is the mean reciprocal rank (MRR). Chapter 06 (notebooks/06_search.ipynb), exercise 06.1."""
    first = relevant.float().argmax(1) + 1  # argmax finds the first True; an all-False row gives 0, masked below
    return torch.where(relevant.any(1), 1.0 / first, torch.zeros(len(relevant)))


def ndcg_at_k(relevant: Tensor, n_relevant: Tensor, k: int = K_EVAL) -> Tensor:
    r"""Per query: NDCG@k with gains 0 or 1, :math:`\sum_{i \le k} \mathrm{rel}_i / \log_2(i + 1)` divided by the same
    sum for the ideal list, whose first ``min(k, R)`` results are relevant (``R``: ``n_relevant``). Chapter 06
    (notebooks/06_search.ipynb), exercise 06.2."""
    discount = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (relevant[:, :k].double() * discount[: relevant[:, :k].shape[1]]).sum(1)
    ideal = (torch.arange(k)[None, :] < n_relevant[:, None].clamp(max=k)).double()
    return (dcg / (ideal * discount).sum(1).clamp_min(1e-12)).float()


def relevance(index: SearchIndex, ids: Tensor, query_labels: Tensor) -> tuple[Tensor, Tensor]:
    """``relevant[i, j]``: result j of query i has the query's class; and each query's number of relevant items."""
    most = int(query_labels.max()) + 1 if len(query_labels) else 0  # a query class the catalogue lacks counts 0
    counts = torch.bincount(index.labels, minlength=most)
    return index.labels[ids] == query_labels[:, None], counts[query_labels]


def mean_precision(emb: Embedder, index: SearchIndex, images: Tensor, labels: Tensor, k: int = 10) -> float:
    """Mean precision@k of ``images`` (of classes ``labels``) used as queries."""
    _, ids = query(emb, index, images, k)
    return float(precision_at_k(relevance(index, ids, labels)[0], k).mean())


def query_set(n: int, dataset: str = DEFAULT) -> tuple[Tensor, Tensor]:
    """The first ``n`` test images and labels of ``dataset``: the queries of every benchmark (Fashion-MNIST's test
    split is shuffled)."""
    images, labels = data.load("test", dataset=dataset)
    return images[:n], labels[:n]


def single_query_ms(emb: Embedder, index: SearchIndex, images: Tensor, k: int = 10) -> float:
    """Median wall-clock milliseconds from one image to its top-``k`` ids (embed + search), one at a time.

    Measured on one thread, as a search server answers each request (its other cores serve other requests):
    a single small query gains little from splitting it over threads, and on a shared machine the threads
    mostly wait for each other.
    """
    with threads(1):
        query(emb, index, images[:1], k)  # warm-up: first-call allocations are not a query's cost
        times = []
        for image in images:
            start = time.perf_counter()
            query(emb, index, image[None], k)
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def evaluate_embedding(
    name: str, n_queries: int = 10_000, directory: Path | None = None, rebuild: bool = False, repeats: int = 50,
    dataset: str = DEFAULT,
) -> dict[str, Any]:
    """Benchmark one embedding on ``dataset``: precision@1, precision@10, mAP@100 (relevant = same class), the mean
    precision@k curve for k = 1..100 (fewer for a catalogue smaller than 100), build time, query latency (single
    and batched, embedding included) and index memory."""
    emb, index = catalogue_index(name, directory, rebuild, dataset=dataset)
    images, labels = query_set(n_queries, dataset)
    depth = min(K_EVAL, len(index))
    start = time.perf_counter()
    _, ids = query(emb, index, images, depth)
    batch_ms = (time.perf_counter() - start) * 1000.0 / len(images)
    relevant, n_relevant = relevance(index, ids, labels)
    curve = (relevant.float().cumsum(1) / torch.arange(1, depth + 1)).mean(0)
    return {
        "embedding": name,
        "available": True,
        "dim": index.dim,
        "precision_at_1": round(float(precision_at_k(relevant, 1).mean()), 4),
        "precision_at_10": round(float(precision_at_k(relevant, 10).mean()), 4),
        "map_at_100": round(float(average_precision_at_k(relevant, n_relevant, depth).mean()), 4),
        "build_s": round(index.build_seconds, 2),
        "build_cpu_s": round(index.build_cpu_seconds, 2),
        "query_ms_single": round(single_query_ms(emb, index, images[:repeats], min(10, len(index))), 3),
        "query_ms_batch": round(batch_ms, 3),
        "memory_mb": round(index.nbytes / 2**20, 1),
        "n_queries": len(images),
        "n_catalogue": len(index),
        "precision_curve": [round(float(p), 4) for p in curve],
    }


def benchmark(
    n_queries: int = 10_000, names: Sequence[str] | None = None, directory: Path | None = None,
    rebuild: bool = False, dataset: str = DEFAULT,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_embedding` for every embedding on ``dataset``; one that is not available there (no
    checkpoint, or a model of another data set) says why instead of a number."""
    results = {}
    for name in names or EMBEDDINGS:
        reason = unavailable(name, directory, dataset)
        results[name] = ({"embedding": name, "available": False, "reason": reason} if reason else
                         evaluate_embedding(name, n_queries, directory, rebuild, dataset=dataset))
    return results


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The benchmark as a text table (what the notebook and ``python -m prodlab bench retrieval`` print)."""
    lines = [f"{'embedding':22s} {'dim':>4s} {'P@1':>6s} {'P@10':>6s} {'mAP@100':>7s} {'build s':>8s} {'(CPU s)':>8s} "
             f"{'ms/query':>8s} {'ms/query':>8s} {'index MB':>8s}",
             f"{'':22s} {'':>4s} {'':>6s} {'':>6s} {'':>7s} {'':>8s} {'':>8s} {'single':>8s} {'batched':>8s}"]
    for name, r in results.items():
        if not r["available"]:
            lines.append(f"{EMBEDDINGS[name].title:22s} {r['reason']}")
            continue
        lines.append(f"{EMBEDDINGS[name].title:22s} {r['dim']:4d} {r['precision_at_1']:6.3f} "
                     f"{r['precision_at_10']:6.3f} {r['map_at_100']:7.3f} {r['build_s']:8.1f} {r['build_cpu_s']:8.1f} "
                     f"{r['query_ms_single']:8.2f} {r['query_ms_batch']:8.3f} {r['memory_mb']:8.1f}")
    return "\n".join(lines)
