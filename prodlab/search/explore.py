"""Looking at search results (notebook 06, article §2.4 item 3): best and worst queries, edited and generated
queries, and a 2-D map of the catalogue's embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prodlab import checkpoints, data, imageio
from prodlab.search.embed import Embedder, catalogue, unavailable
from prodlab.search.evaluate import precision_at_k, relevance
from prodlab.search.index import SearchIndex, query
from prodlab.search.photo import photo_image


def by_precision(index: SearchIndex, ids: Tensor, labels: Tensor, k: int = 8) -> tuple[Tensor, Tensor]:
    """Query positions ordered from best to worst precision@k (ties: lower position first), and the precisions."""
    p = precision_at_k(relevance(index, ids, labels)[0], k)
    order = torch.from_numpy(np.lexsort((np.arange(len(p)), -p.numpy())))
    return order, p


def shift(images: Tensor, dx: int) -> Tensor:
    """Move products ``dx`` pixels to the right (left if negative), filling with background: an edited item."""
    x = data.as_batch(images)
    out = torch.zeros_like(x)
    if dx >= 0:
        out[..., dx:] = x[..., : x.shape[-1] - dx]
    else:
        out[..., :dx] = x[..., -dx:]
    return out


def brighten(images: Tensor, gain: float | Tensor) -> Tensor:
    """Scale every pixel by ``gain`` (clipped to [0, 1]): a lighter (gain > 1) or darker product; a tensor
    ``gain`` of shape N x 1 x 1 x 1 gives each image its own."""
    return (data.as_batch(images) * gain).clamp(0.0, 1.0)


def catalogue_map(emb: Embedder, n: int = 3000, seed: int = 0) -> tuple[np.ndarray, Tensor]:
    """A 2-D t-SNE map (n x 2) of ``n`` random items' embeddings of the embedder's catalogue, and their labels.

    The vectors are normalised (the map then follows cosine similarity, like the search) and reduced to 50
    dimensions with PCA first, the usual recipe to make t-SNE faster and less noisy.
    """
    from sklearn.decomposition import PCA  # scikit-learn is slow to import; only this map needs it here
    from sklearn.manifold import TSNE

    images, labels = catalogue(emb.dataset)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    vectors = F.normalize(emb(images[pick]), dim=1).numpy()
    if vectors.shape[1] > 50:
        vectors = PCA(50, random_state=seed).fit_transform(vectors)
    points = TSNE(2, perplexity=30.0, init="pca", max_iter=1000, random_state=seed).fit_transform(vectors)
    return points, labels[pick]


def good_and_failed(index: SearchIndex, ids: Tensor, labels: Tensor, n: int = 5, k: int = 8) -> tuple[Tensor, Tensor]:
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


def recovery(emb: Embedder, index: SearchIndex, items: Tensor, edit: Callable[[Tensor], Tensor], k: int = 10) -> float:
    """Fraction of catalogue ``items`` (of the embedder's data set) whose edited image finds the original item among
    its top ``k`` results."""
    _, ids = query(emb, index, edit(catalogue(emb.dataset)[0][items]), k)
    return float((ids == items[:, None]).any(1).float().mean())


def variant_queries(item: int, photo_of: int, directory: Path | None = None, seed: int = 0) -> dict[str, Tensor]:
    """Queries of Fashion-MNIST that are not catalogue thumbnails, each float C x H x W: a shop photo of test
    product ``photo_of`` brought back by :func:`~prodlab.search.photo.photo_image`, the ``EDITS`` of catalogue item
    ``item`` and, when their checkpoints exist, the VAE's decoding of that item and one sample of each shipped
    generator."""
    original = data.to_float(catalogue()[0][item : item + 1])
    out = {"shop photo": photo_image(imageio.shop_photo(data.load("test")[0][photo_of]), data.spec())}
    out |= {name: edit(original)[0] for name, edit in EDITS.items()}
    if unavailable("vae", directory) is None:
        out["VAE decoded"] = checkpoints.load("vae", directory).reconstruct(original)[0]
    for name in ("dcgan", "vae"):
        if checkpoints.exists(name, directory):
            out[f"{name} sample"] = data.to_float(checkpoints.generate(name, 1, seed, directory)[0])[0]
    return out
