"""The data sets the workbook can train on, by name: the built-in Fashion-MNIST and every stored catalogue
(an imported image folder, ``python -m prodlab data import``; the generated colour catalogue).

Each has an :class:`~prodlab.datasets.spec.ImageSpec` and two splits of uint8 images N x H x W x C with int64 class
labels; ``prodlab.data`` serves them to the rest of the package as float batches.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from prodlab import config, files
from prodlab.datasets import colour, fashion_mnist, store
from prodlab.datasets.spec import ImageSpec

DEFAULT = fashion_mnist.NAME
SPLITS = ("train", "test")


def names() -> list[str]:
    """Every data set there is now: the built-in one first, then the readable stored catalogues by name."""
    return [DEFAULT] + [c.name for c in store.list_catalogues() if c.problem is None]


def spec(name: str = DEFAULT) -> ImageSpec:
    """The image spec of data set ``name`` (a stored catalogue's is read from its file, which is verified)."""
    if name == DEFAULT:
        return fashion_mnist.SPEC
    return _catalogue(str(config.data_home()), name)[0]


def load(name: str = DEFAULT, split: str = "train", download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N x H x W x C) and class labels (int64 N) of ``split`` of data set ``name``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if name == DEFAULT:
        return fashion_mnist.load(split, download)
    tensors = _catalogue(str(config.data_home()), name)[1]
    return tensors[f"{split}_images"], tensors[f"{split}_labels"]


def attributes(name: str, split: str = "train") -> torch.Tensor | None:
    """The extra attributes of every image (int64 N x K, in the order of ``spec(name).attributes``), or None."""
    if name == DEFAULT:
        return None
    return _catalogue(str(config.data_home()), name)[1].get(f"{split}_attributes")


@lru_cache(maxsize=4)
def _catalogue(home: str, name: str) -> tuple[ImageSpec, dict[str, torch.Tensor]]:
    # ``home`` (the data folder) is part of the key: tests and users may point PRODLAB_DATA elsewhere
    if name == colour.NAME and not colour.is_current():  # made from Fashion-MNIST on first use, like its cache
        colour.build()
    return store.read_catalogue(name)


def fingerprint(name: str = DEFAULT) -> dict[str, str]:
    """SHA-256 of the training data of ``name`` (what a checkpoint records): Fashion-MNIST's two training files
    (verified when staged), or a stored catalogue's file."""
    if name == DEFAULT:
        return {file: digest for file, digest in fashion_mnist.SHA256.items() if file.startswith("train-")}
    spec(name)  # a missing or corrupt catalogue says so here
    return {store.CATALOGUE_FILE: files.sha256(store.catalogue_dir(name) / store.CATALOGUE_FILE)}


def forget() -> None:
    """Drop the catalogues this process has read (after one was imported again)."""
    _catalogue.cache_clear()
