"""Exact against approximate search, 60,000 to 10,000,000 products (notebook 06, ``python -m prodlab bench search``).

Fashion-MNIST has 60,000 catalogue products. Larger catalogues are an honest stand-in, said in the JSON:

- up to :data:`AUGMENTED_MAX` items: the real 60,000 embeddings, then embeddings of **augmented catalogue
  products** (each round of 60,000 flips a coin per image for a horizontal mirror, shifts it by -2..2 pixels and
  scales its brightness by 0.7..1.3, with ``explore.shift`` / ``explore.brighten``) pushed through the embedder.
  They are cached in ``data/cache`` (1 GB at 1M) with the embedder time they cost;
- beyond that: those vectors repeated with Gaussian **jitter in embedding space** (:data:`JITTER_SIGMA` per
  coordinate, then re-normalised), which costs no embedder time but clusters them more tightly than products are.

Per size N the benchmark reports recall@10 of the approximate index against exact search on 1,000 held-out test
queries (its ``nprobe`` tuned on 1,000 other test images), the latency of one query at a time on one thread
(p50 / p99) and of a batch (per query, on ``threads`` threads), build time and bytes per item, for both indexes.
Exact search is the package's :class:`~prodlab.search.index.Index`, what ``search --index exact`` runs: a float32
torch matrix product and ``topk``. Latencies are of the search alone: embedding a query costs both the same.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from prodlab import config, data, files
from prodlab.datasets import DEFAULT
from prodlab.search import approx
from prodlab.search.embed import BEST, Embedder, catalogue
from prodlab.search.explore import brighten, shift
from prodlab.search.index import TUNE_QUERIES, Index, SearchIndex, catalogue_index, tune_queries

AUGMENTED_MAX = 1_000_000
JITTER_SIGMA = 0.02  # per coordinate of a unit 256-d vector: the jitter's length is about 0.3
N_QUERIES = 1000
SINGLE_QUERIES = 300  # queries timed one at a time (exact search at 1M takes ~0.1 s each)
FULL_SIZES = (60_000, 1_000_000, 10_000_000)
QUICK_SIZES = (60_000, 200_000)
BENCH_FILE = config.CHECKPOINT_DIR / "bench_search.json"
QUICK_FILE = config.RUNS_DIR / "bench_search_quick.json"
COMPARE = ("IVF{nlist},Flat", "IVF{nlist},SQ8", "HNSW32,Flat")
HNSW_MAX = 200_000  # HNSW is compared only up to here: at 1M its build takes tens of minutes on one core
STAND_IN = ("items 0-59,999: the real catalogue; up to 1,000,000: embeddings of augmented catalogue products "
            "(mirror coin, shift -2..2 px, brightness x0.7..1.3); beyond: those vectors with Gaussian jitter "
            f"(sigma {JITTER_SIGMA} per coordinate) in embedding space")


def augmented(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image mirrored with probability 1/2, shifted by -2..2 pixels and brightened by x0.7..1.3."""
    x = data.as_batch(images)
    mirror = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    dx = torch.randint(-2, 3, (len(x),), generator=generator)
    gain = 0.7 + 0.6 * torch.rand(len(x), generator=generator)
    out = torch.empty_like(x)
    for d in range(-2, 3):
        out[dx == d] = shift(x[dx == d], d)
    return brighten(out, gain[:, None, None, None])


def _cached_standin(prefix: str, n: int) -> tuple[Tensor, Tensor, float] | None:
    """The first ``n`` augmented vectors from the smallest cached set that holds at least ``n`` (their embedder
    seconds scaled to ``n``), or None; a damaged file is removed."""
    found = config.cache_dir().glob(f"{prefix}*-v1.safetensors")
    sizes = sorted(int(p.name[len(prefix) :].split("-")[0]) for p in found)
    for size in (s for s in sizes if s >= n):
        path = config.cache_dir() / f"{prefix}{size}-v1.safetensors"
        try:
            cached = load_file(str(path))
            return cached["vectors"][:n], cached["labels"][:n], float(cached["embed_seconds"]) * n / size
        except (SafetensorError, OSError, KeyError):
            path.unlink(missing_ok=True)
    return None


def augmented_vectors(emb: Embedder, n: int, seed: int = 0, chunk: int = 10_000) -> tuple[Tensor, Tensor, float]:
    """Vectors and labels of ``n`` augmented products of the embedder's catalogue (round r = 1, 2, ... of its
    60,000), and the seconds the embedder took; cached under the data set and the embedder's key, so a second run
    costs no embedder time. Each round draws its augmentations for every catalogue image, so a smaller set is the
    start of a larger one."""
    prefix = f"search-standin-{emb.dataset}-{emb.name}-{emb.key[:16]}-s{seed}-"
    cached = _cached_standin(prefix, n)
    if cached is not None:
        return cached
    images, labels = catalogue(emb.dataset)
    vectors, start = None, time.perf_counter()
    for first in range(0, n, len(images)):
        batch = augmented(images, torch.Generator().manual_seed(seed * 1000 + first // len(images) + 1))
        batch = batch[: n - first]
        for i in range(0, len(batch), chunk):
            v = emb(batch[i : i + chunk], batch_size=250)
            vectors = torch.empty(n, v.shape[1]) if vectors is None else vectors
            vectors[first + i : first + i + len(v)] = v
    seconds = time.perf_counter() - start
    out_labels = labels.repeat(n // len(labels) + 1)[:n]
    files.write_tensors(config.cache_dir() / f"{prefix}{n}-v1.safetensors",
                        {"vectors": vectors, "labels": out_labels, "embed_seconds": torch.tensor(seconds)})
    return vectors, out_labels, seconds


def grown(base: Tensor, base_labels: Tensor, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` vectors: ``base`` first, then its rows again with Gaussian jitter in embedding space."""
    extra = n - len(base)
    if extra <= 0:
        return base[:n], base_labels[:n]
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(extra) % len(base)
    out = torch.cat([base, base[rows] + JITTER_SIGMA * torch.randn(extra, base.shape[1], generator=gen)])
    return out, base_labels[torch.cat([torch.arange(len(base)), rows])]


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of a list of durations, in milliseconds."""
    return {"p50": round(float(np.percentile(seconds, 50)) * 1e3, 4),
            "p99": round(float(np.percentile(seconds, 99)) * 1e3, 4)}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def _one_query(index: SearchIndex, q: Tensor, k: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one search."""
    wall, cpu = time.perf_counter(), time.process_time()
    index.search(q[None], k)
    return time.perf_counter() - wall, time.process_time() - cpu


def latency(index: SearchIndex, queries: Tensor, threads: int, n_single: int, k: int = approx.K_RECALL) -> dict:
    """One query at a time on one thread (p50, p99 over ``n_single`` queries, wall clock; and the median CPU
    time, which other processes on a shared machine do not inflate), and all ``queries`` batched on ``threads``
    threads (milliseconds per query)."""
    with approx.threads(1):
        index.search(queries[:1], k)  # warm-up
        single = np.array([_one_query(index, q, k) for q in queries[:n_single]]).reshape(-1, 2)
    with approx.threads(threads):
        batched = timed(lambda: index.search(queries, k))[1]
    return {"single_ms": percentiles_ms(single[:, 0]), "single_cpu_ms_p50": percentiles_ms(single[:, 1])["p50"],
            "single_queries_timed": len(single),
            "batched_ms_per_query": round(batched * 1e3 / len(queries), 4), "batched_queries": len(queries)}


def measure_approx(vectors: Tensor, labels: Tensor, queries: Tensor, exact_ids: Tensor, tune_queries: Tensor,
                   tune_ids: Tensor, factory: str, threads: int, n_single: int) -> tuple[dict, approx.ApproxIndex]:
    """Build one FAISS index, tune its probe on the tuning queries, then measure it on the evaluation queries."""
    with approx.threads(threads):
        index, build_s = timed(lambda: approx.ApproxIndex.build("bench", "bench", vectors, labels, factory))
        tuning = index.tune(tune_queries, tune_ids)
    ids = index.search(queries, approx.K_RECALL)[1]
    header = index.header()
    return {"factory": factory, "nlist": int(header["nlist"]), "m": int(header["m"]),
            "probe_name": index.probe_name, "probe": index.probe,
            "tuning_recall": {str(p): round(r, 4) for p, r in tuning.items()}, "build_s": round(build_s, 2),
            "recall_at_10": round(approx.recall_at_k(ids, exact_ids), 4),
            "bytes_per_item": round(index.nbytes / len(index), 1),
            **latency(index, queries, threads, len(queries) if n_single else 0)}, index


def measure_size(n: int, base: Tensor, base_labels: Tensor, queries: Tensor, tune_queries: Tensor,
                 threads: int, factories: Sequence[str], n_single: int, n_real: int) -> dict[str, Any]:
    """Exact and approximate indexes over the first ``n`` stand-in vectors (the first ``n_real`` of them the real
    catalogue's), measured side by side."""
    vectors, labels = grown(base, base_labels, n)
    with approx.threads(threads):
        exact, build_s = timed(lambda v=vectors, y=labels: Index.build("bench", "bench", v, y))
        exact_ids = exact.search(queries, approx.K_RECALL)[1]
        tune_ids = exact.search(tune_queries, approx.K_RECALL)[1]
    del vectors, labels  # at 10M the jittered copy is 10 GB: the exact index holds its own
    result: dict[str, Any] = {
        "n": n, "source": "real" if n <= n_real else "augmented" if n <= AUGMENTED_MAX else "jittered",
        "exact": {"method": "prodlab.search.Index (torch float32 matrix product + topk)", "build_s": round(build_s, 2),
                  "bytes_per_item": round(exact.nbytes / n, 1), **latency(exact, queries, threads, n_single)}}
    compared = []
    for factory in factories:
        f = factory.format(nlist=approx.nlist_for(n))
        if f.startswith("HNSW") and n > HNSW_MAX:
            continue
        m, _ = measure_approx(exact.vectors, exact.labels, queries, exact_ids, tune_queries, tune_ids, f, threads,
                              n_single)
        m["speedup_single_p50"] = round(result["exact"]["single_ms"]["p50"] / m["single_ms"]["p50"], 1)
        m["speedup_single_cpu_p50"] = round(result["exact"]["single_cpu_ms_p50"] / m["single_cpu_ms_p50"], 1)
        m["meets_target"] = m["recall_at_10"] >= approx.TARGET_RECALL and m["speedup_single_p50"] >= 5
        compared.append(m)
    result["approx"], result["compared"] = compared[0], compared[1:]
    return result


def fits_in_memory(n: int, dim: int) -> str | None:
    """Why ``n`` float32 vectors cannot be benchmarked here (the exact and flat indexes each hold a copy, and the
    stand-in a third), or None when about 3 copies fit in the machine's physical memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = 3 * n * dim * 4
    return None if need < 0.8 * total else (f"needs about {need / 2**30:.0f} GiB for vectors (3 copies) and this "
                                            f"machine has {total / 2**30:.0f} GiB")


def bench_search(sizes: Sequence[int] | None = None, threads: int = 1, compare: bool = True, seed: int = 0,
                 n_queries: int = N_QUERIES, n_single: int = SINGLE_QUERIES, name: str = BEST,
                 factories: Sequence[str] | None = None, dataset: str = DEFAULT) -> dict[str, Any]:
    """The scale benchmark (see the module docstring) of the catalogue of ``dataset`` at each of ``sizes``;
    ``compare`` also measures the other index types (``COMPARE``) at every size, which is how the default one was
    chosen."""
    sizes = sorted(sizes or (QUICK_SIZES if config.quick() else FULL_SIZES))
    factories = list(factories or (COMPARE if compare else COMPARE[:1]))
    load_before, start = os.getloadavg(), time.perf_counter()
    emb, catalogue_idx = catalogue_index(name, dataset=dataset)
    test_images = data.load("test", dataset=dataset)[0]
    queries, tuning = emb(test_images[:n_queries]), emb(tune_queries(test_images))
    n_aug = min(max(sizes), AUGMENTED_MAX) - len(catalogue_idx)
    aug, aug_labels, embed_s = (augmented_vectors(emb, n_aug, seed) if n_aug > 0 else
                                (torch.empty(0, catalogue_idx.dim), torch.empty(0, dtype=torch.long), 0.0))
    base, base_labels = torch.cat([catalogue_idx.vectors, aug]), torch.cat([catalogue_idx.labels, aug_labels])
    del aug
    results = []
    for n in sizes:
        reason = fits_in_memory(n, catalogue_idx.dim)
        results.append({"n": n, "skipped": reason} if reason else
                       measure_size(n, base, base_labels, queries, tuning, threads, factories, n_single,
                                    len(catalogue_idx)))
    return {
        "what": "exact vs approximate (FAISS) product search, python -m prodlab bench search",
        "dataset": dataset, "embedding": name, "dim": catalogue_idx.dim, "k": approx.K_RECALL,
        "target_recall": approx.TARGET_RECALL,
        "stand_in": STAND_IN, "augmented_items": max(n_aug, 0), "augmented_embed_s": round(embed_s, 1),
        "augmented_embed_ms_per_item": round(embed_s * 1e3 / max(n_aug, 1), 3),
        "queries": f"test images 0-{n_queries - 1} (recall and latency); {TUNE_QUERIES.start}-"
                   f"{TUNE_QUERIES.stop - 1} tune nprobe/efSearch",
        "threads": threads, "single_query_threads": 1, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "faiss_version": faiss.__version__, "torch_version": torch.__version__,
        "seconds": round(time.perf_counter() - start, 1), "results": results,
    }
