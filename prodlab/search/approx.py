"""Approximate nearest-neighbour search on FAISS, for catalogues of millions (notebook 06, issue "search at scale").

Exact search reads every catalogue vector for every query: at 1,000,000 products of 256 floats that is 1 GB per
query. An inverted-file index (IVF) clusters the catalogue into ``nlist`` cells with k-means once; a query is
compared with the ``nlist`` cell centres, then only with the items of its ``nprobe`` nearest cells. The answer can
miss a neighbour that sits in an unvisited cell, so ``nprobe`` is tuned by measurement: the smallest power of two
whose recall@10 against exact search reaches :data:`TARGET_RECALL` on held-out queries (:meth:`ApproxIndex.tune`).
Cosine similarity is computed as FAISS's inner product on L2-normalised vectors, as the exact index does.

File format (one safetensors file; loading parses bytes and runs no code, nothing is pickled):

- tensor ``faiss``: uint8 [B], the FAISS index as ``faiss.serialize_index`` writes it (FAISS's own binary layout,
  read back with ``faiss.deserialize_index``);
- tensor ``labels``: int64 [N], the class of each item; an item's id is its insertion order (0 .. N-1);
- metadata (text): ``kind`` = ``approx``, ``engine`` = ``faiss``, ``format`` (:data:`FORMAT`), ``faiss_version``,
  ``factory`` (the ``faiss.index_factory`` string, e.g. ``IVF1024,Flat``), ``dim``, ``metric`` =
  ``inner_product``, ``n``, ``nlist`` (0 when not IVF), ``m`` (PQ sub-quantisers, 0 when none), ``nprobe`` and
  ``efsearch`` (the tuned search parameter; 0 when it does not apply), ``embedding``, ``key`` (what the vectors
  depend on), ``build_seconds`` and ``build_cpu_seconds``.

Loading checks the format version, the dimension, the metric and that ``labels`` has one row per item.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prodlab import files
from prodlab.search.embed import SearchError, check_k

FORMAT = 2  # bump when the file layout or the exact vectors change: old cache files are then rebuilt
K_RECALL = 10  # recall@10 against exact search is what the index is tuned and judged on
TARGET_RECALL = 0.95
TRAIN_PER_LIST = 64  # k-means training points per IVF cell (FAISS warns below 39)
METRIC = "inner_product"


def nlist_for(n: int) -> int:
    """IVF cells for ``n`` items: the power of two nearest to sqrt(n) (1,024 at 1M), at least 1.

    FAISS's guideline is 4 sqrt(n) to 16 sqrt(n) cells; fewer, larger cells train and add faster on a CPU and
    need a larger ``nprobe``, which the tuning then measures.
    """
    return max(1, 2 ** round(np.log2(max(n, 1)) / 2))


def default_factory(n: int) -> str:
    """The index type chosen by measurement (see ``docs/search-at-scale.md``): IVF cells of full vectors."""
    return f"IVF{nlist_for(n)},Flat"


def unit(vectors: Tensor | np.ndarray) -> np.ndarray:
    """float32 C-contiguous rows of length 1 (FAISS's inner product is then the cosine similarity)."""
    return F.normalize(torch.as_tensor(vectors).float().reshape(len(vectors), -1), dim=1).contiguous().numpy()


def recall_at_k(ids: Tensor, exact_ids: Tensor) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k (both M x k)."""
    return float((ids[:, :, None] == exact_ids[:, None, :]).any(2).float().mean())


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run FAISS and torch on ``n`` threads, restoring both settings after."""
    before_faiss, before_torch = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before_faiss)
        torch.set_num_threads(before_torch)


def _ivf(index: faiss.Index) -> Any | None:
    """The IVF part of ``index`` (through a refine wrapper), or None when it has none (HNSW, Flat)."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


@dataclass
class ApproxIndex:
    """A FAISS index of unit vectors (id = insertion order) and their labels, with the tuned search parameter."""

    kind: ClassVar[str] = "approx"
    embedding: str
    key: str
    faiss_index: faiss.Index
    labels: Tensor  # int64 N
    factory: str
    probe: int = 1  # nprobe (IVF) or efSearch (HNSW): how much of the index one query visits
    build_seconds: float = 0.0
    build_cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.set_probe(self.probe)

    @classmethod
    def build(cls, embedding: str, key: str, vectors: Tensor, labels: Tensor, factory: str | None = None,
              seed: int = 0) -> ApproxIndex:
        """Train (k-means on at most ``TRAIN_PER_LIST`` points per cell, a seeded sample) and fill the index."""
        x = unit(vectors)
        factory = factory or default_factory(len(x))
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            ivf = _ivf(index)
            cells = max(ivf.nlist if ivf else 1, 256)  # at least 256: a PQ code book has 256 entries
            n_train = min(len(x), TRAIN_PER_LIST * cells)
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n_train].sort().values
            index.train(x[pick.numpy()])
        out = cls(embedding, key, index, torch.empty(0, dtype=torch.long), factory)
        out.add(x, labels)
        return out

    @property
    def probe_name(self) -> str:
        return "efSearch" if self.factory.startswith("HNSW") else "nprobe"

    def set_probe(self, value: int) -> None:
        """Set ``nprobe`` (IVF) or ``efSearch`` (HNSW); a flat index has neither and ignores it."""
        self.probe = int(value)
        if self.probe_name == "efSearch" or _ivf(self.faiss_index) is not None:
            faiss.ParameterSpace().set_index_parameter(self.faiss_index, self.probe_name, self.probe)

    def __len__(self) -> int:
        return self.faiss_index.ntotal

    @property
    def dim(self) -> int:
        return self.faiss_index.d

    @property
    def nbytes(self) -> int:
        """Bytes of the serialised index plus the labels (about its memory; costs one copy to measure)."""
        return len(faiss.serialize_index(self.faiss_index)) + self.labels.numel() * self.labels.element_size()

    def add(self, vectors: Tensor | np.ndarray, labels: Tensor) -> None:
        """Append items (normalised here); their ids continue from ``len(self)``."""
        self.faiss_index.add(unit(vectors))
        self.labels = torch.cat([self.labels, torch.as_tensor(labels).long()])

    def _search(self, queries: Tensor, k: int, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """FAISS's answer as torch tensors; an id of -1 marks a missing result (too few items visited)."""
        check_k(k, len(self))
        q = unit(queries.reshape(-1, self.dim))
        parts = [self.faiss_index.search(q[i : i + batch_size], k) for i in range(0, len(q), batch_size)]
        scores, ids = (torch.from_numpy(np.concatenate(p)) for p in zip(*parts, strict=True))
        return scores, ids

    def search(self, queries: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Approximate top-``k`` of each query vector (M x D): cosine scores and ids, each M x k, best first."""
        scores, ids = self._search(queries, k, batch_size)
        if (ids < 0).any():
            raise SearchError(f"fewer than {k} items found: raise {self.probe_name} (now {self.probe})")
        return scores, ids

    def tune(self, queries: Tensor, exact_ids: Tensor, target: float = TARGET_RECALL) -> dict[int, float]:
        """Set the smallest power-of-two ``nprobe`` / ``efSearch`` whose recall@k against ``exact_ids`` (M x k,
        the exact top-k of ``queries``) reaches ``target`` with k results for every query; return the recall of
        every value tried."""
        k = exact_ids.shape[1]
        ivf = _ivf(self.faiss_index)
        value, limit = (1, ivf.nlist) if ivf is not None else (k, 4096)
        tried: dict[int, float] = {}
        while True:
            self.set_probe(value)
            ids = self._search(queries, k)[1]
            tried[value] = recall_at_k(ids, exact_ids)
            if (tried[value] >= target and (ids >= 0).all()) or value >= limit:
                return tried
            value *= 2

    def header(self) -> dict[str, str]:
        """The safetensors metadata described in the module docstring."""
        ivf = _ivf(self.faiss_index)
        pq = getattr(ivf, "pq", None)
        return {"kind": self.kind, "engine": "faiss", "format": str(FORMAT), "faiss_version": faiss.__version__,
                "factory": self.factory, "dim": str(self.dim), "metric": METRIC, "n": str(len(self)),
                "nlist": str(ivf.nlist if ivf is not None else 0), "m": str(pq.M if pq is not None else 0),
                "nprobe": str(self.probe if self.probe_name == "nprobe" else 0),
                "efsearch": str(self.probe if self.probe_name == "efSearch" else 0),
                "embedding": self.embedding, "key": self.key,
                "build_seconds": f"{self.build_seconds:.3f}", "build_cpu_seconds": f"{self.build_cpu_seconds:.3f}"}

    def save(self, path: Path) -> Path:
        """Write the index in the documented safetensors format, atomically."""
        blob = torch.from_numpy(faiss.serialize_index(self.faiss_index))
        return files.write_tensors(Path(path), {"faiss": blob, "labels": self.labels}, self.header())

    @classmethod
    def from_file_contents(cls, meta: dict[str, str], tensors: dict[str, Tensor]) -> ApproxIndex:
        """The index from a file's metadata and tensors; ``ValueError`` saying what does not match."""
        if meta.get("kind") != cls.kind or meta.get("format") != str(FORMAT):
            raise ValueError(f"not an approximate index of format {FORMAT} (kind {meta.get('kind')!r}, "
                             f"format {meta.get('format')!r})")
        index = faiss.deserialize_index(tensors["faiss"].numpy())
        labels = tensors["labels"]
        if index.d != int(meta["dim"]) or index.ntotal != len(labels) or index.ntotal != int(meta["n"]):
            raise ValueError(f"damaged: {index.ntotal} x {index.d} vectors, {len(labels)} labels, header says "
                             f"{meta['n']} x {meta['dim']}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT or meta["metric"] != METRIC:
            raise ValueError("the index does not use the inner product (cosine on unit vectors)")
        probe = int(meta["nprobe"]) or int(meta["efsearch"]) or 1
        return cls(meta["embedding"], meta["key"], index, labels.long(), meta["factory"], probe,
                   float(meta["build_seconds"]), float(meta["build_cpu_seconds"]))
