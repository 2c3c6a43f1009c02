"""Product image search (article §2.4 item 3): find the catalogue products that look like a query image.

The article lists "search and categorisation of products" among the uses of image models without saying how.
Search by image is nearest-neighbour retrieval in an **embedding**: a function that maps a 28 x 28 product to a
vector, so that similar products get vectors pointing the same way. The catalogue (the 60,000 training images) is
embedded once into an :class:`Index` of unit vectors; a query is embedded the same way and its top-k neighbours by
cosine similarity ``<q, v> / (|q| |v|)`` are one matrix product and a ``topk`` (exact search, batched).

Five embeddings compete on one protocol (:func:`evaluate_embedding`; queries = test images, relevant = same
class): raw pixels, PCA of the pixels (scikit-learn), the VAE's latent mean, the GAN discriminator's features
and the classifier's penultimate features. Those that need a model use its shipped checkpoint and are reported as
not available until it exists. Built indexes are cached in ``data/cache`` under the embedding and the SHA-256 of
the weights (or of the data), so ``python -m prodlab search IMAGE`` answers in well under a second.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from prodlab import checkpoints, config, data

FORMAT = 2  # bump when the cache layout changes: old cache files are then ignored
PCA_DIM = 64
K_EVAL = 100  # mAP@100 and the precision curve go this deep


class SearchError(ValueError):
    """An unknown embedding, or one whose model is not trained yet; the message says what to do."""


@dataclass(frozen=True)
class EmbeddingSpec:
    """One way to turn a product image into a vector for search."""

    name: str
    title: str
    checkpoint: str | None  # the shipped model it needs, None for pixels and PCA
    how: str


EMBEDDINGS: dict[str, EmbeddingSpec] = {s.name: s for s in (
    EmbeddingSpec("pixels", "raw pixels", None, "the 784 pixel values"),
    EmbeddingSpec("pca", "PCA of pixels", None, f"projection on the {PCA_DIM} principal axes of the catalogue"),
    EmbeddingSpec("vae", "VAE latent mean", "vae", "the mean mu(x) of the encoder's q(z|x)"),
    EmbeddingSpec("dcgan", "GAN discriminator", "dcgan",
                  "the discriminator's last feature map, averaged over its 7 x 7 positions"),
    EmbeddingSpec("classifier", "classifier features", "classifier", "the classifier's penultimate layer"),
)}
BEST = "classifier"


def embedding_spec(name: str) -> EmbeddingSpec:
    if name not in EMBEDDINGS:
        raise SearchError(f"unknown embedding {name!r}; embeddings: {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[name]


def unavailable(name: str, directory: Path | None = None) -> str | None:
    """Why embedding ``name`` cannot be used yet (its model has no checkpoint), or None when it can."""
    spec = embedding_spec(name)
    if spec.checkpoint is None or (spec.checkpoint in checkpoints.MODELS
                                   and checkpoints.exists(spec.checkpoint, directory)):
        return None
    return f"{name}: not available yet (train it with python -m prodlab train {spec.checkpoint})"


def available(directory: Path | None = None) -> list[str]:
    return [name for name in EMBEDDINGS if unavailable(name, directory) is None]


# ---------------------------------------------------------------- embeddings


def as_batch(images: Tensor) -> Tensor:
    """uint8 N x 28 x 28, or float (N x) 1 x 28 x 28 in [0, 1] -> float N x 1 x 28 x 28 in [0, 1]."""
    if images.dtype == torch.uint8:
        return data.to_float(images.reshape(-1, 28, 28))
    return images.float().reshape(-1, 1, 28, 28)


@dataclass(frozen=True)
class Embedder:
    """A named function from product images to vectors; ``key`` changes whenever its vectors would."""

    name: str
    key: str  # SHA-256 of the checkpoint's weights, or of the catalogue for pixels / PCA
    fn: Callable[[Tensor], Tensor]  # float N x 1 x 28 x 28 in [0, 1] -> N x D

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Vectors (float32 N x D) of a batch of images, computed in chunks (eval mode: deterministic)."""
        x = as_batch(images)
        return torch.cat([self.fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).float().contiguous()


def catalogue() -> tuple[Tensor, Tensor]:
    """The searchable catalogue: the 60,000 training images (uint8) and their labels; an item's id is its row."""
    return data.load("train")


def _cache_dir() -> Path:
    return config.data_home() / "cache"


def _data_key() -> str:
    return data.SHA256["train-images-idx3-ubyte"]


def _weights_key(name: str, directory: Path | None) -> str:
    meta = checkpoints.read_meta(name, directory)
    return meta.get("weights_sha256") or data.sha256(checkpoints.paths(name, directory)[0])


def fit_pca(images: Tensor, dim: int = PCA_DIM, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Mean (784) and principal axes (dim x 784) of the images' pixels, by scikit-learn's randomized PCA."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit(as_batch(images).flatten(1).numpy())
    return torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()


def _pca_params(refit: bool) -> tuple[Tensor, Tensor]:
    """The catalogue's PCA, fitted once and cached (the fit is part of building the PCA index)."""
    path = _cache_dir() / f"search-pca{PCA_DIM}-params-{_data_key()[:16]}-v{FORMAT}.safetensors"
    if path.is_file() and not refit:
        try:
            params = load_file(str(path))
            return params["mean"], params["components"]
        except (SafetensorError, OSError, KeyError):
            path.unlink()
    mean, components = fit_pca(catalogue()[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"mean": mean.contiguous(), "components": components.contiguous()}, str(path))
    return mean, components


def _gan_features(model: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    """Adapter: the discriminator's flattened 4w x 7 x 7 feature map, averaged over the 49 positions -> 4w.

    The flat map (6,272 numbers for w = 32) would make a 1.5 GB index of 60,000 products; global average pooling
    is the usual way to read a convolutional network as a feature extractor, and it ignores where on the 7 x 7
    grid a pattern fires, as similar products shifted by a pixel need.
    """
    return lambda x: model.discriminator_features(x, len(x)).unflatten(1, (-1, 7, 7)).mean((2, 3))


def embedder(name: str, directory: Path | None = None, refit: bool = False) -> Embedder:
    """The embedding ``name`` (see ``EMBEDDINGS``), loaded from its checkpoint; ``SearchError`` if it has none."""
    reason = unavailable(name, directory)
    if reason is not None:
        raise SearchError(reason)
    if name == "pixels":
        return Embedder(name, embedding_key(name), lambda x: x.flatten(1))
    if name == "pca":
        mean, components = _pca_params(refit)
        return Embedder(name, embedding_key(name), lambda x: (x.flatten(1) - mean) @ components.T)
    model = checkpoints.load(EMBEDDINGS[name].checkpoint, directory)
    key = embedding_key(name, directory)
    if name == "vae":
        return Embedder(name, key, lambda x: model.encode(x)[0])
    if name == "dcgan":
        return Embedder(name, key, _gan_features(model))
    return Embedder(name, key, model.features)


# ---------------------------------------------------------------- the index


@dataclass(frozen=True)
class Index:
    """Unit-length embeddings of the catalogue (row = catalogue id), searched exactly by cosine similarity."""

    embedding: str
    key: str
    vectors: Tensor  # float32 N x D, rows of length 1
    labels: Tensor  # int64 N: the class of each catalogue item
    build_seconds: float = 0.0  # wall-clock time to build it (load the model / fit PCA, embed, normalise)
    build_cpu_seconds: float = 0.0  # CPU time of the same (all threads): what a shared machine cannot inflate

    @classmethod
    def from_vectors(cls, embedding: str, key: str, vectors: Tensor, labels: Tensor) -> Index:
        return cls(embedding, key, F.normalize(vectors.float(), dim=1).contiguous(), labels.long())

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def nbytes(self) -> int:
        return self.vectors.numel() * self.vectors.element_size() + self.labels.numel() * self.labels.element_size()

    @torch.no_grad()
    def search(self, queries: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Top-``k`` catalogue items of each query vector (M x D): cosine scores and ids, each M x k, best first.

        Exact search: the queries are normalised and multiplied with the catalogue matrix in batches of
        ``batch_size`` queries (memory ``batch_size x N`` floats), then ``topk`` keeps the k best of each row.
        """
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the catalogue size {len(self)}, not {k}")
        q = F.normalize(queries.float().reshape(-1, self.dim), dim=1)
        tops = [(q[i : i + batch_size] @ self.vectors.T).topk(k, dim=1) for i in range(0, len(q), batch_size)]
        return torch.cat([t.values for t in tops]), torch.cat([t.indices for t in tops])

    def save(self, path: Path) -> Path:
        """Write the index as one safetensors file (tensors and text metadata; nothing is pickled)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        meta = {"embedding": self.embedding, "key": self.key, "build_seconds": f"{self.build_seconds:.3f}",
                "build_cpu_seconds": f"{self.build_cpu_seconds:.3f}", "format": str(FORMAT)}
        save_file({"vectors": self.vectors, "labels": self.labels}, str(partial), metadata=meta)
        partial.replace(path)  # atomic: a reader never sees half a file
        return path

    @classmethod
    def load(cls, path: Path) -> Index:
        """Read an index written by :meth:`save`; ``SearchError`` if the file is missing or damaged."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in ("vectors", "labels")}
            return cls(meta["embedding"], meta["key"], tensors["vectors"], tensors["labels"],
                       float(meta["build_seconds"]), float(meta["build_cpu_seconds"]))
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise SearchError(f"cannot read the search index {path}: {err}") from err


def cache_path(name: str, key: str) -> Path:
    return _cache_dir() / f"search-{name}-{key[:16]}-v{FORMAT}.safetensors"


def embedding_key(name: str, directory: Path | None = None) -> str:
    """What the vectors of ``name`` depend on: the weights' SHA-256, or the catalogue's for pixels and PCA."""
    spec = embedding_spec(name)
    if spec.checkpoint is not None:
        return _weights_key(spec.checkpoint, directory)
    return _data_key() if name == "pixels" else f"pca{PCA_DIM}-{_data_key()}"


def build_index(name: str, directory: Path | None = None) -> tuple[Embedder, Index]:
    """Embed the whole catalogue with embedding ``name``, timed from loading the model (or fitting PCA) on."""
    start, cpu_start = time.perf_counter(), time.process_time()
    emb = embedder(name, directory, refit=True)
    images, labels = catalogue()
    index = Index.from_vectors(name, emb.key, emb(images), labels)
    return emb, dataclasses.replace(index, build_seconds=time.perf_counter() - start,
                                    build_cpu_seconds=time.process_time() - cpu_start)


def catalogue_index(name: str, directory: Path | None = None, rebuild: bool = False) -> tuple[Embedder, Index]:
    """The embedder and the catalogue index of ``name``: from the cache when it matches the weights, else built
    (and cached). ``rebuild`` ignores the cache, so that the build time is measured afresh."""
    reason = unavailable(name, directory)
    if reason is not None:
        raise SearchError(reason)
    path = cache_path(name, embedding_key(name, directory))
    if path.is_file() and not rebuild:
        try:
            index = Index.load(path)
            emb = embedder(name, directory)
            if index.key == emb.key and len(index) == len(catalogue()[1]):
                return emb, index
        except SearchError:
            pass
        path.unlink(missing_ok=True)
    emb, index = build_index(name, directory)
    index.save(path)
    for stale in _cache_dir().glob(f"search-{name}-*.safetensors"):  # indexes of weights since replaced
        if stale != path:
            stale.unlink(missing_ok=True)
    return emb, index


def query(emb: Embedder, index: Index, images: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    """Search with images rather than vectors: embed them with ``emb``, then ``index.search``."""
    if emb.name != index.embedding or emb.key != index.key:
        raise SearchError(f"the index was built with {index.embedding} ({index.key[:12]}), "
                          f"not with {emb.name} ({emb.key[:12]})")
    return index.search(emb(images), k)


# ---------------------------------------------------------------- how good a search is


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


def relevance(index: Index, ids: Tensor, query_labels: Tensor) -> tuple[Tensor, Tensor]:
    """``relevant[i, j]``: result j of query i has the query's class; and each query's number of relevant items."""
    counts = torch.bincount(index.labels, minlength=len(data.CLASS_NAMES))
    return index.labels[ids] == query_labels[:, None], counts[query_labels]


def mean_precision(emb: Embedder, index: Index, images: Tensor, labels: Tensor, k: int = 10) -> float:
    """Mean precision@k of ``images`` (of classes ``labels``) used as queries."""
    _, ids = query(emb, index, images, k)
    return float(precision_at_k(relevance(index, ids, labels)[0], k).mean())


def query_set(n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` test images and labels: the queries of every benchmark (the test split is shuffled)."""
    images, labels = data.load("test")
    return images[:n], labels[:n]


def single_query_ms(emb: Embedder, index: Index, images: Tensor, k: int = 10) -> float:
    """Median wall-clock milliseconds from one 28 x 28 image to its top-``k`` ids (embed + search), one at a time.

    Measured on one thread, as a search server answers each request (its other cores serve other requests):
    a single small query gains little from splitting it over threads, and on a shared machine the threads
    mostly wait for each other.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        query(emb, index, images[:1], k)  # warm-up: first-call allocations are not a query's cost
        times = []
        for image in images:
            start = time.perf_counter()
            query(emb, index, image[None], k)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times) * 1000.0)


def evaluate_embedding(
    name: str, n_queries: int = 10_000, directory: Path | None = None, rebuild: bool = False, repeats: int = 50,
) -> dict[str, Any]:
    """Benchmark one embedding: precision@1, precision@10, mAP@100 (relevant = same class), the mean precision@k
    curve for k = 1..100, build time, query latency (single and batched, embedding included) and index memory."""
    emb, index = catalogue_index(name, directory, rebuild)
    images, labels = query_set(n_queries)
    start = time.perf_counter()
    _, ids = query(emb, index, images, K_EVAL)
    batch_ms = (time.perf_counter() - start) * 1000.0 / len(images)
    relevant, n_relevant = relevance(index, ids, labels)
    curve = (relevant.float().cumsum(1) / torch.arange(1, K_EVAL + 1)).mean(0)
    return {
        "embedding": name,
        "available": True,
        "dim": index.dim,
        "precision_at_1": round(float(precision_at_k(relevant, 1).mean()), 4),
        "precision_at_10": round(float(precision_at_k(relevant, 10).mean()), 4),
        "map_at_100": round(float(average_precision_at_k(relevant, n_relevant, K_EVAL).mean()), 4),
        "build_s": round(index.build_seconds, 2),
        "build_cpu_s": round(index.build_cpu_seconds, 2),
        "query_ms_single": round(single_query_ms(emb, index, images[:repeats]), 3),
        "query_ms_batch": round(batch_ms, 3),
        "memory_mb": round(index.nbytes / 2**20, 1),
        "n_queries": len(images),
        "n_catalogue": len(index),
        "precision_curve": [round(float(p), 4) for p in curve],
    }


def benchmark(
    n_queries: int = 10_000, names: Sequence[str] | None = None, directory: Path | None = None,
    rebuild: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_embedding` for every embedding; one without a checkpoint says so instead of a number."""
    results = {}
    for name in names or EMBEDDINGS:
        reason = unavailable(name, directory)
        results[name] = ({"embedding": name, "available": False, "reason": reason} if reason else
                         evaluate_embedding(name, n_queries, directory, rebuild))
    return results


# ---------------------------------------------------------------- looking at the results


def by_precision(index: Index, ids: Tensor, labels: Tensor, k: int = 8) -> tuple[Tensor, Tensor]:
    """Query positions ordered from best to worst precision@k (ties: lower position first), and the precisions."""
    p = precision_at_k(relevance(index, ids, labels)[0], k)
    order = torch.from_numpy(np.lexsort((np.arange(len(p)), -p.numpy())))
    return order, p


def shift(images: Tensor, dx: int) -> Tensor:
    """Move products ``dx`` pixels to the right (left if negative), filling with background: an edited item."""
    x = as_batch(images)
    out = torch.zeros_like(x)
    if dx >= 0:
        out[..., dx:] = x[..., : x.shape[-1] - dx]
    else:
        out[..., :dx] = x[..., -dx:]
    return out


def brighten(images: Tensor, gain: float) -> Tensor:
    """Scale every pixel by ``gain`` (clipped to [0, 1]): a lighter (gain > 1) or darker product."""
    return (as_batch(images) * gain).clamp(0.0, 1.0)


def catalogue_map(emb: Embedder, n: int = 3000, seed: int = 0) -> tuple[np.ndarray, Tensor]:
    """A 2-D t-SNE map (n x 2) of ``n`` random catalogue items' embeddings, and their labels.

    The vectors are normalised (the map then follows cosine similarity, like the search) and reduced to 50
    dimensions with PCA first, the usual recipe to make t-SNE faster and less noisy.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    images, labels = catalogue()
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    vectors = F.normalize(emb(images[pick]), dim=1).numpy()
    if vectors.shape[1] > 50:
        vectors = PCA(50, random_state=seed).fit_transform(vectors)
    points = TSNE(2, perplexity=30.0, init="pca", max_iter=1000, random_state=seed).fit_transform(vectors)
    return points, labels[pick]


def good_and_failed(index: Index, ids: Tensor, labels: Tensor, n: int = 5, k: int = 8) -> tuple[Tensor, Tensor]:
    """Positions of ``n`` perfect queries (precision@k = 1) of distinct classes, and of the ``n`` worst queries."""
    order, p = by_precision(index, ids, labels, k)
    good: list[int] = []
    for i in order.tolist():
        if p[i] == 1.0 and all(labels[j] != labels[i] for j in good):
            good.append(i)
        if len(good) == n:
            break
    return torch.tensor(good, dtype=torch.long), order[-n:].flip(0)


EDITS: dict[str, Callable[[Tensor], Tensor]] = {
    "shifted 3 px": lambda x: shift(x, 3),
    "darker ×0.6": lambda x: brighten(x, 0.6),
    "brighter ×1.6": lambda x: brighten(x, 1.6),
}


def recovery(emb: Embedder, index: Index, items: Tensor, edit: Callable[[Tensor], Tensor], k: int = 10) -> float:
    """Fraction of catalogue ``items`` whose edited image finds the original item among its top ``k`` results."""
    _, ids = query(emb, index, edit(catalogue()[0][items]), k)
    return float((ids == items[:, None]).any(1).float().mean())


def variant_queries(item: int, photo_of: int, directory: Path | None = None, seed: int = 0) -> dict[str, Tensor]:
    """Queries that are not catalogue thumbnails, each float 1 x 28 x 28: a shop photo of test product ``photo_of``
    brought back by ``imageio.to_product_image``, the ``EDITS`` of catalogue item ``item`` and, when their
    checkpoints exist, the VAE's decoding of that item and one sample of each shipped generator."""
    from prodlab import imageio

    original = data.to_float(catalogue()[0][item : item + 1])
    out = {"shop photo": imageio.to_product_image(imageio.shop_photo(data.load("test")[0][photo_of]))}
    out |= {name: edit(original)[0] for name, edit in EDITS.items()}
    if unavailable("vae", directory) is None:
        out["VAE decoded"] = checkpoints.load("vae", directory).reconstruct(original)[0]
    for name in ("dcgan", "vae"):
        if name in checkpoints.MODELS and checkpoints.exists(name, directory):
            out[f"{name} sample"] = data.to_float(checkpoints.generate(name, 1, seed, directory)[0])[0]
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The benchmark as a text table (what the notebook and ``python -m prodlab evaluate search`` print)."""
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
