"""The exact search index, and the catalogue's cached indexes of either kind (notebook 06, article §2.4 item 3).

A query is embedded like the catalogue and its top-k neighbours by cosine similarity ``<q, v> / (|q| |v|)`` are
returned. :class:`Index` stores unit vectors, so cosine similarity is one matrix product and a ``topk``: exact
search, batched. :class:`prodlab.search.approx.ApproxIndex` (FAISS) answers the same calls approximately, for
catalogues of millions. Both follow :class:`SearchIndex`: ``build``, ``add``, ``search``, ``save`` and ``load``.

Exact index file (safetensors, nothing pickled): tensors ``vectors`` (float32 N x D, unit rows) and ``labels``
(int64 N); text metadata ``kind`` = ``exact``, ``embedding``, ``key``, ``build_seconds``, ``build_cpu_seconds``
and ``format``. Built indexes are cached in ``data/cache`` under the data set, the embedding and the SHA-256 of the
weights (or of the data), so ``python -m prodlab search IMAGE`` answers in well under a second.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor

from prodlab import config, data, files
from prodlab.datasets import DEFAULT
from prodlab.search import approx
from prodlab.search.embed import (
    FORMAT,
    Embedder,
    SearchError,
    catalogue,
    check_k,
    embedder,
    embedding_key,
    unavailable,
)

KINDS = ("exact", "approx")  # what ``--index`` accepts
TUNE_QUERIES = slice(1000, 2000)  # test images that tune the approximate index: not the first 1,000 it is judged on


def tune_queries(test_images: Tensor) -> Tensor:
    """The test images that tune an approximate index: ``TUNE_QUERIES``, or the second half of a test split too
    small to hold them (a small imported catalogue)."""
    if len(test_images) >= TUNE_QUERIES.stop:
        return test_images[TUNE_QUERIES]
    return test_images[len(test_images) // 2 :]


class SearchIndex(Protocol):
    """What every index offers: vectors in, ``(scores, ids)`` out, one safetensors file on disk."""

    kind: ClassVar[str]
    embedding: str
    key: str
    labels: Tensor
    build_seconds: float
    build_cpu_seconds: float

    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def add(self, vectors: Tensor, labels: Tensor) -> None: ...
    def search(self, queries: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]: ...
    def save(self, path: Path) -> Path: ...


@dataclass
class Index:
    """Unit-length embeddings of the catalogue (row = catalogue id), searched exactly by cosine similarity."""

    kind: ClassVar[str] = "exact"
    embedding: str
    key: str
    vectors: Tensor  # float32 N x D, rows of length 1
    labels: Tensor  # int64 N: the class of each catalogue item
    build_seconds: float = 0.0  # wall-clock time to build it (load the model / fit PCA, embed, normalise)
    build_cpu_seconds: float = 0.0  # CPU time of the same (all threads): what a shared machine cannot inflate

    @classmethod
    def build(cls, embedding: str, key: str, vectors: Tensor, labels: Tensor) -> Index:
        """An index of ``vectors`` (N x D, any length: they are normalised) and their ``labels`` (N)."""
        return cls(embedding, key, F.normalize(vectors.float(), dim=1).contiguous(), labels.long())

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def nbytes(self) -> int:
        return self.vectors.numel() * self.vectors.element_size() + self.labels.numel() * self.labels.element_size()

    def add(self, vectors: Tensor, labels: Tensor) -> None:
        """Append items; their ids continue from ``len(self)``."""
        self.vectors = torch.cat([self.vectors, F.normalize(vectors.float(), dim=1)]).contiguous()
        self.labels = torch.cat([self.labels, labels.long()])

    @torch.no_grad()
    def search(self, queries: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Top-``k`` catalogue items of each query vector (M x D): cosine scores and ids, each M x k, best first.

        Exact search: the queries are normalised and multiplied with the catalogue matrix in batches of
        ``batch_size`` queries (memory ``batch_size x N`` floats), then ``topk`` keeps the k best of each row.
        """
        check_k(k, len(self))
        q = F.normalize(queries.float().reshape(-1, self.dim), dim=1)
        tops = [(q[i : i + batch_size] @ self.vectors.T).topk(k, dim=1) for i in range(0, len(q), batch_size)]
        return torch.cat([t.values for t in tops]), torch.cat([t.indices for t in tops])

    def save(self, path: Path) -> Path:
        """Write the index as one safetensors file (tensors and text metadata; nothing is pickled), atomically."""
        meta = {"kind": self.kind, "embedding": self.embedding, "key": self.key, "format": str(FORMAT),
                "build_seconds": f"{self.build_seconds:.3f}", "build_cpu_seconds": f"{self.build_cpu_seconds:.3f}"}
        return files.write_tensors(Path(path), {"vectors": self.vectors, "labels": self.labels}, meta)

    @classmethod
    def load(cls, path: Path) -> Index:
        """Read an index written by :meth:`save`; ``SearchError`` if the file is missing, damaged or not exact."""
        index = load_index(path)
        if not isinstance(index, cls):
            raise SearchError(f"cannot read the search index {path}: it is a {index.kind} index, not an exact one")
        return index


@torch.no_grad()
def sharded_search(queries: Tensor, shards: Sequence[Tensor], k: int = 10) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` over the catalogue ``torch.cat(shards)`` (unit rows) from each shard's own top-``k``: what a
    service that splits its catalogue over machines does. A top-k of top-k's is exact: each of the k best is among
    the k best of its shard. Ids are rows of the whole catalogue; scores are cosines of unit ``queries`` (M x D).
    Chapter 06 (notebooks/06_search.ipynb), exercise 06.3."""
    offsets = torch.tensor([0, *(len(s) for s in shards)]).cumsum(0)
    tops = [(queries.float() @ shard.T).topk(min(k, len(shard)), dim=1) for shard in shards]
    scores = torch.cat([t.values for t in tops], dim=1)
    ids = torch.cat([t.indices + offsets[i] for i, t in enumerate(tops)], dim=1)
    best, where = scores.topk(k, dim=1)
    return best, ids.gather(1, where)


def load_index(path: Path) -> Index | approx.ApproxIndex:
    """Read an index file of either kind (its ``kind`` metadata says which); ``SearchError`` if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        if meta.get("kind", "exact") == "exact":
            return Index(meta["embedding"], meta["key"], tensors["vectors"], tensors["labels"],
                         float(meta["build_seconds"]), float(meta["build_cpu_seconds"]))
        return approx.ApproxIndex.from_file_contents(meta, tensors)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as err:
        raise SearchError(f"cannot read the search index {path}: {err}") from err


def _cache_prefix(kind: str) -> str:
    return "search-" if kind == "exact" else "search-approx-"


def cache_path(name: str, key: str, kind: str = "exact", dataset: str = DEFAULT) -> Path:
    """Where the catalogue index of ``dataset`` for embedding ``name`` (weights/data ``key``) of ``kind`` is
    cached: ``search[-approx]-DATASET-NAME-KEY16-vFORMAT.safetensors``."""
    version = FORMAT if kind == "exact" else approx.FORMAT
    return config.cache_dir() / f"{_cache_prefix(kind)}{dataset}-{name}-{key[:16]}-v{version}.safetensors"


def _same_index(path: Path, name: str, kind: str, dataset: str) -> bool:
    """Whether cache file ``path`` is an index of ``dataset``, ``name`` and ``kind`` (of any key or format), or,
    for Fashion-MNIST, one of the names before data sets (``search-NAME-KEY16-vN``). The key field has a fixed
    length and embedding names have no dash, so no other data set's file matches."""
    prefix = _cache_prefix(kind)
    stems = [f"{prefix}{dataset}-{name}-"] + ([f"{prefix}{name}-"] if dataset == DEFAULT else [])
    return any(re.fullmatch(re.escape(stem) + r".{16}-v\d+\.safetensors", path.name) for stem in stems)


def build_index(name: str, directory: Path | None = None, dataset: str = DEFAULT) -> tuple[Embedder, Index]:
    """Embed the whole catalogue of ``dataset`` with embedding ``name``, timed from loading the model (or fitting
    PCA) on."""
    start, cpu_start = time.perf_counter(), time.process_time()
    emb = embedder(name, directory, refit=True, dataset=dataset)
    images, labels = catalogue(dataset)
    index = Index.build(name, emb.key, emb(images), labels)
    return emb, dataclasses.replace(index, build_seconds=time.perf_counter() - start,
                                    build_cpu_seconds=time.process_time() - cpu_start)


def build_approx(emb: Embedder, exact: Index) -> approx.ApproxIndex:
    """The FAISS index of the catalogue's vectors, its ``nprobe`` tuned on test images (:func:`tune_queries` of
    the embedder's data set, whose exact top-10 the exact index gives) to reach ``approx.TARGET_RECALL``; timed,
    tuning included."""
    start, cpu_start = time.perf_counter(), time.process_time()
    index = approx.ApproxIndex.build(exact.embedding, exact.key, exact.vectors, exact.labels)
    queries = emb(tune_queries(data.load("test", dataset=emb.dataset)[0]))
    index.tune(queries, exact.search(queries, min(approx.K_RECALL, len(exact)))[1])
    index.build_seconds = exact.build_seconds + time.perf_counter() - start
    index.build_cpu_seconds = exact.build_cpu_seconds + time.process_time() - cpu_start
    return index


def catalogue_index(
    embedding: str, directory: Path | None = None, rebuild: bool = False, kind: str = "exact",
    dataset: str = DEFAULT,
) -> tuple[Embedder, Index | approx.ApproxIndex]:
    """The embedder and the catalogue index of ``dataset`` for ``embedding`` and ``kind`` (``exact``, or
    ``approx``: FAISS): from the cache when it matches the weights (or data), else built (and cached).
    ``rebuild`` ignores the cache, so that the build time is measured afresh. The approximate index is built from
    the exact one's vectors. ``SearchError`` when the embedding is not available on ``dataset``."""
    if kind not in KINDS:
        raise SearchError(f"unknown index kind {kind!r}; kinds: {', '.join(KINDS)}")
    reason = unavailable(embedding, directory, dataset)
    if reason is not None:
        raise SearchError(reason)
    key, n = embedding_key(embedding, directory, dataset), len(catalogue(dataset)[1])
    made: list[Embedder] = []  # the embedder a build made (PCA fitted once, not twice), else one made after loading

    def build() -> Index | approx.ApproxIndex:
        if kind == "exact":
            emb, index = build_index(embedding, directory, dataset)
            made.append(emb)
            return index
        emb, exact = catalogue_index(embedding, directory, rebuild, dataset=dataset)
        made.append(emb)
        return build_approx(emb, exact)

    def save(path: Path, index: Index | approx.ApproxIndex) -> None:
        index.save(path)
        for stale in config.cache_dir().glob(f"{_cache_prefix(kind)}*.safetensors"):  # of weights since replaced
            if stale != path and _same_index(stale, embedding, kind, dataset):
                stale.unlink(missing_ok=True)

    def matches(index: Index | approx.ApproxIndex) -> bool:  # a stale or damaged file is removed and rebuilt
        return index.kind == kind and index.key == key and len(index) == n

    index = files.load_or_build(cache_path(embedding, key, kind, dataset), build, valid=matches, load=load_index,
                                save=save, refresh=rebuild)
    return (made[-1] if made else embedder(embedding, directory, dataset=dataset)), index


def query(emb: Embedder, index: SearchIndex, images: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    """Search with images rather than vectors: embed them with ``emb``, then ``index.search``."""
    if emb.name != index.embedding or emb.key != index.key:
        raise SearchError(f"the index was built with {index.embedding} ({index.key[:12]}), "
                          f"not with {emb.name} ({emb.key[:12]})")
    return index.search(emb(images), k)
