"""Search with a photo (notebook 06, article §2.4 item 3; ``python -m prodlab search PHOTO [--data NAME]``).

A shopper's photo is first made an image of the catalogue's spec, as the catalogue's own images were made: a grey
thumbnail framed like Fashion-MNIST's for a one-channel catalogue (``imageio.to_product_image``), a colour one
fitted with its aspect ratio kept and padded with its border colour for a three-channel catalogue
(``imageio.to_colour_image``, what ``data import`` does to every file). Both read the file in bounded memory. Then
it is embedded and searched like any query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from prodlab import data, imageio
from prodlab.datasets import DEFAULT
from prodlab.datasets.spec import ImageSpec
from prodlab.search.embed import SearchError, best_available
from prodlab.search.index import catalogue_index, query


def photo_image(source: str | Path | Image.Image | Tensor, image: ImageSpec) -> Tensor:
    """A photo (a path or a PIL image) as a query of the catalogue spec ``image``: float C x H x W in [0, 1]. A
    tensor is taken as an image already: one stored image (uint8 H x W x C) or any form ``data.as_batch`` accepts,
    of that spec."""
    if isinstance(source, Tensor):
        stored = (image.height, image.width, image.channels)
        one = source.dtype == torch.uint8 and tuple(source.shape) == stored
        return data.as_batch(source[None] if one else source, image)[0]
    if image.channels == 1:
        x = imageio.to_product_image(source, imageio.Framing(size=image.height, fit=image.height))
    elif image.channels == 3:
        x = imageio.to_colour_image(source, image)
    else:
        raise SearchError(f"a catalogue of {image.channels}-channel images cannot be searched with a photo "
                          "(one or three channels only)")
    return data.as_batch(x, image)[0]


def search_photo(
    path_or_image: str | Path | Image.Image | Tensor, dataset: str = DEFAULT, k: int = 8,
    embedding: str | None = None, kind: str = "exact", directory: Path | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` catalogue products of ``dataset`` that look most like a photo, best first: one dict per hit with
    ``id`` (the row in the catalogue, ``search.catalogue(dataset)``), ``label``, ``class`` (its name), ``score``
    (cosine similarity, 4 decimals) and ``embedding`` (the one used).

    ``embedding`` None: the best one available on ``dataset`` (``best_available``: its classifier, else PCA);
    ``kind``: the exact or the approximate index (built and cached on first use). ``imageio.ImageError`` for a file
    that is not a readable image, ``SearchError`` for an embedding not available on ``dataset``.
    """
    image = data.spec(dataset)
    x = photo_image(path_or_image, image)  # a bad file fails here, before any index is built
    name = embedding or best_available(directory, dataset)
    emb, index = catalogue_index(name, directory, kind=kind, dataset=dataset)
    scores, ids = query(emb, index, x[None], k)
    hits = []
    for i, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
        label = int(index.labels[i])
        hits.append({"id": i, "label": label, "class": image.class_names[label], "score": round(score, 4),
                     "embedding": name})
    return hits


def found_images(hits: list[dict[str, Any]], dataset: str = DEFAULT) -> Tensor:
    """The catalogue images of ``hits`` (:func:`search_photo`), in order: float N x C x H x W in [0, 1]."""
    images = data.load("train", dataset=dataset)[0]
    return data.to_float(images[torch.tensor([hit["id"] for hit in hits], dtype=torch.long)])
