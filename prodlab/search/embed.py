"""Embeddings for product search (notebook 06, article §2.4 item 3): functions from a 28 x 28 product to a vector.

Five embeddings compete: raw pixels, PCA of the pixels (scikit-learn), the VAE's latent mean, the GAN
discriminator's features and the classifier's penultimate features. Those that need a model use its shipped
checkpoint and are reported as not available until it exists. Each :class:`Embedder` carries a ``key`` (the
SHA-256 of the weights, or of the catalogue) that names the cache files built from its vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from prodlab import checkpoints, config, data, files

FORMAT = 3  # bump when the cache layout or the vectors change: old cache files are then ignored
PCA_DIM = 64


class SearchError(ValueError):
    """An unknown embedding, a model not trained yet or an unreadable index file; the message says what to do."""


def check_k(k: int, n: int) -> None:
    """``ValueError`` unless 1 <= k <= n (the catalogue size): what every index checks before a search."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the catalogue size {n}, not {k}")


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
    """The spec of embedding ``name``; ``SearchError`` naming the valid ones if there is none."""
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
    """The embeddings usable now (notebook 06 compares them)."""
    return [name for name in EMBEDDINGS if unavailable(name, directory) is None]


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
    def __call__(self, images: Tensor, batch_size: int = 250) -> Tensor:
        """Vectors (float32 N x D) of a batch of images, computed in chunks (eval mode: deterministic). Chunks of
        250 keep the convolutions' activations in the CPU's caches (1.3 to 2 times faster than 1,000 on one thread,
        the same vectors bit for bit); channels-last memory, as the ruler's, halves the classifier's time again
        (the vectors then differ at float rounding, 1e-6)."""
        x = as_batch(images)
        chunks = (x[i : i + batch_size].contiguous(memory_format=torch.channels_last)
                  for i in range(0, len(x), batch_size))
        return torch.cat([self.fn(chunk) for chunk in chunks]).float().contiguous()


def catalogue() -> tuple[Tensor, Tensor]:
    """The searchable catalogue: the 60,000 training images (uint8) and their labels; an item's id is its row."""
    return data.load("train")


def _data_key() -> str:
    return data.SHA256["train-images-idx3-ubyte"]


def embedding_key(name: str, directory: Path | None = None) -> str:
    """What the vectors of ``name`` depend on: the weights' SHA-256, or the catalogue's for pixels and PCA."""
    spec = embedding_spec(name)
    if spec.checkpoint is not None:
        return checkpoints.weights_sha256(spec.checkpoint, directory)
    return _data_key() if name == "pixels" else f"pca{PCA_DIM}-{_data_key()}"


def fit_pca(images: Tensor, dim: int = PCA_DIM, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Mean (784) and principal axes (dim x 784) of the images' pixels, by scikit-learn's randomized PCA."""
    from sklearn.decomposition import PCA  # scikit-learn is slow to import; only PCA and t-SNE need it

    pca = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit(as_batch(images).flatten(1).numpy())
    return torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()


def _pca_params(refit: bool) -> tuple[Tensor, Tensor]:
    """The catalogue's PCA, fitted once and cached (the fit is part of building the PCA index)."""
    path = config.cache_dir() / f"search-pca{PCA_DIM}-params-{_data_key()[:16]}-v{FORMAT}.safetensors"

    def fit() -> dict[str, Tensor]:
        mean, components = fit_pca(catalogue()[0])
        return {"mean": mean, "components": components}

    params = files.load_or_build(path, fit, valid=lambda t: {"mean", "components"} <= t.keys(), refresh=refit)
    return params["mean"], params["components"]


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
    model = checkpoints.load(EMBEDDINGS[name].checkpoint, directory).to(memory_format=torch.channels_last)
    key = embedding_key(name, directory)
    if name == "vae":
        return Embedder(name, key, lambda x: model.encode(x)[0])
    if name == "dcgan":
        return Embedder(name, key, _gan_features(model))
    return Embedder(name, key, model.features)
