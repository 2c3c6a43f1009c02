"""Search by words (issue 26, notebook 10): the catalogue products whose photos lie nearest a prompt in the text-image
model's shared space (``prodlab.models.clip``), as ``python -m prodlab search --text "a blue striped shirt"`` runs it.

The catalogue's photos are embedded once by the model's image encoder and kept in the cache, keyed on the model's
weights; a prompt is embedded by its text encoder (a word outside its vocabulary is refused in one line that lists
the vocabulary), and the products are ranked by cosine similarity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from prodlab import checkpoints, config, datasets, files
from prodlab.models.clip import CLIP
from prodlab.search.embed import SearchError, catalogue, check_k

MODEL = "clip"  # the shipped text-image model
FORMAT = 1  # bump when the cached vectors change meaning


def text_model(dataset: str, directory: Path | None = None) -> CLIP:
    """The text-image model trained on catalogue ``dataset``; ``SearchError`` (one line, with the command that trains
    one) when there is none. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    if not checkpoints.exists(MODEL, directory):
        raise SearchError(f"no text-image model yet: python -m prodlab train {MODEL}")
    trained_on = checkpoints.read_meta(MODEL, directory).get("dataset", datasets.DEFAULT)
    if trained_on != dataset:
        raise SearchError(f"the text-image model knows the words of catalogue {trained_on!r}, not {dataset!r}: "
                          f"search it with --data {trained_on}")
    model = checkpoints.load(MODEL, directory, kind="clip")
    assert isinstance(model, CLIP)  # the kind says so
    return model


def catalogue_vectors(model: CLIP, dataset: str, directory: Path | None = None) -> Tensor:
    """The unit image vectors of every catalogue product (N x D), built once and cached on the model's weights.
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    key = checkpoints.weights_sha256(MODEL, directory)[:16]
    path = config.cache_dir() / f"search-{dataset}-{MODEL}-{key}-v{FORMAT}.safetensors"
    n = len(catalogue(dataset)[1])
    built = files.load_or_build(path, lambda: {"vectors": model.encode_images(catalogue(dataset)[0])},
                                valid=lambda t: "vectors" in t and len(t["vectors"]) == n)
    return built["vectors"]


def search_text(prompt: str, dataset: str, k: int = 8, directory: Path | None = None) -> list[dict[str, Any]]:
    """The ``k`` catalogue products of ``dataset`` nearest to ``prompt``, best first: ``id`` (the row in the
    catalogue), ``label``, ``class``, each attribute's value, and ``score`` (cosine, 4 decimals). Chapter 10."""
    model = text_model(dataset, directory)
    vectors = catalogue_vectors(model, dataset, directory)
    check_k(k, len(vectors))
    scores, ids = (vectors @ model.encode_prompts([prompt])[0]).topk(k)
    spec = model.cfg.image
    labels, attributes = catalogue(dataset)[1], datasets.attributes(dataset, "train")
    hits = []
    for i, score in zip(ids.tolist(), scores.tolist(), strict=True):
        hit = {"id": i, "label": int(labels[i]), "class": spec.class_names[int(labels[i])]}
        for column, (name, values) in enumerate(spec.attributes):
            hit[name] = values[int(attributes[i, column])]
        hits.append({**hit, "score": round(score, 4)})
    return hits
