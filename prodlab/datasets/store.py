"""The on-disk catalogue store: every data set that is not built in (an imported image folder, ``python -m prodlab
data import``; the generated colour catalogue) is one folder ``catalogues/NAME`` under the data home.

A catalogue folder holds two files, written together or not at all:

* ``catalogue.safetensors``: the tensors (``train_images``/``test_images`` uint8 N x H x W x C,
  ``train_labels``/``test_labels`` int64 N, optional ``train_attributes``/``test_attributes`` int64 N x K) and, in
  its metadata, the image spec as JSON and a SHA-256 of the tensors' content, so a reader can tell a damaged file
  from a good one (safetensors holds no pickled code: loading runs nothing);
* ``manifest.json``: what a person wants to know about it (spec, counts, source, seed, creation time, the skipped
  files with their reasons, the files of each split).

Both are written into a hidden temporary folder beside the target (each file atomically, by ``prodlab.files``) and
the folder is then renamed into place, so an import stopped at any moment (Ctrl-C, a full disk) leaves the old
catalogue or none, never half of one. Chapter 09 (notebooks/09_catalogue.ipynb).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from prodlab import config, files
from prodlab.datasets import fashion_mnist
from prodlab.datasets.spec import ImageSpec

CATALOGUE_FILE = "catalogue.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT = "prodlab-catalogue-v1"
SPLITS = ("train", "test")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
IMPORT_HINT = "python -m prodlab data import DIR --name {name}"
_LISTED: dict[tuple[str, int, int, int], CatalogueInfo] = {}  # verified here: (file, inode, mtime, size) -> entry


class CatalogueError(ValueError):
    """A catalogue that is missing or damaged; the one-line message says which and what to do.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """


@dataclass(frozen=True)
class CatalogueInfo:
    """One stored catalogue, as ``python -m prodlab data list`` shows it: its spec and the images per split, or,
    for a damaged one, ``problem`` (one line) and whatever could still be read.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """

    name: str
    spec: ImageSpec | None
    counts: dict[str, int]
    source: str
    path: Path
    problem: str | None = field(default=None)


def catalogues_dir() -> Path:
    """Where the catalogues live: ``catalogues/`` under the data home (``$PRODLAB_DATA`` or the repo's ``data/``).

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    return config.data_home() / "catalogues"


def catalogue_dir(name: str) -> Path:
    """The folder of catalogue ``name`` (checked: :func:`check_name`). Chapter 09 (notebooks/09_catalogue.ipynb)."""
    return catalogues_dir() / check_name(name)


def check_name(name: str) -> str:
    """``name`` if it can name a catalogue: 1-40 characters of ``a-z 0-9 _ -``, starting with a letter or digit,
    and not the built-in data set's; else ``ValueError`` with one line. The name is a folder name on every file
    system and a word on the command line, hence the narrow alphabet.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"catalogue name {name!r}: use 1-40 characters of a-z, 0-9, '_' and '-', starting with a "
                         "letter or digit (e.g. shop-photos)")
    if name == fashion_mnist.NAME:
        raise ValueError(f"catalogue name {name!r} is the built-in data set's; choose another name")
    return name


def content_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order: what a catalogue's metadata records
    and a reader checks (the file cannot hold the hash of its own bytes). Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    digest = hashlib.sha256()
    for key in sorted(tensors):
        _hash_tensor(digest, key, tensors[key])
    return digest.hexdigest()


def _hash_tensor(digest: Any, key: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().contiguous()
    digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
    digest.update(np.ascontiguousarray(t.numpy()).reshape(-1).view(np.uint8).data)


def _check_tensors(spec: ImageSpec, tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """The images per split, once every tensor has the dtype and shape ``spec`` asks for; else ``ValueError``."""
    known = {f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels", "attributes")}
    if set(tensors) - known:
        raise ValueError(f"unknown tensors {sorted(set(tensors) - known)}; a catalogue holds {sorted(known)}")
    counts = {}
    for split in SPLITS:
        images, labels = tensors.get(f"{split}_images"), tensors.get(f"{split}_labels")
        if images is None or labels is None:
            raise ValueError(f"a catalogue needs {split}_images and {split}_labels")
        want = (spec.height, spec.width, spec.channels)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"{split}_images: expected uint8 N x {want[0]} x {want[1]} x {want[2]} (the spec), "
                             f"got {images.dtype} {tuple(images.shape)}")
        n = images.shape[0]
        if labels.dtype != torch.int64 or tuple(labels.shape) != (n,):
            raise ValueError(f"{split}_labels: expected int64 of shape ({n},), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if n and (labels.min() < 0 or labels.max() >= spec.n_classes):
            raise ValueError(f"{split}_labels: values outside 0..{spec.n_classes - 1} (the spec's classes)")
        _check_attributes(spec, split, n, tensors.get(f"{split}_attributes"))
        counts[split] = n
    if counts["train"] == 0:
        raise ValueError("a catalogue needs at least one training image")
    return counts


def _check_attributes(spec: ImageSpec, split: str, n: int, attributes: torch.Tensor | None) -> None:
    """Attributes are there exactly when the spec names some: int64 N x K, each value one of its names."""
    k = len(spec.attributes)
    if attributes is None:
        if k:
            raise ValueError(f"{split}_attributes missing: the spec names {k} attributes")
        return
    if attributes.dtype != torch.int64 or tuple(attributes.shape) != (n, k):
        raise ValueError(f"{split}_attributes: expected int64 of shape ({n}, {k}), got {attributes.dtype} "
                         f"{tuple(attributes.shape)}")
    for j, (attr, values) in enumerate(spec.attributes):
        column = attributes[:, j]
        if n and (column.min() < 0 or column.max() >= len(values)):
            raise ValueError(f"{split}_attributes: {attr} outside 0..{len(values) - 1}")


def write_catalogue(name: str, spec: ImageSpec, tensors: dict[str, torch.Tensor], manifest: dict) -> Path:
    """Store ``tensors`` (checked against ``spec``) as catalogue ``name``, replacing any catalogue of that name
    only once the new one is complete; return its folder.

    ``manifest`` adds to ``manifest.json`` (``source``, ``seed``, ``skipped``: [[path, reason], ...], anything
    else); spec, counts and the creation time are filled in here. Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    target = catalogue_dir(name)
    counts = _check_tensors(spec, tensors)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    files.check_disk(nbytes, target / CATALOGUE_FILE, f"catalogue {name!r} ({sum(counts.values()):,} images)")
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    source = str(manifest.get("source", ""))
    metadata = {"format": FORMAT, "name": name, "spec": json.dumps(spec.to_json()), "source": source,
                "created": created, "sha256": content_sha256(tensors)}
    about = {"name": name, "spec": spec.to_json(), "counts": counts, "source": source, "seed": manifest.get("seed"),
             "created": created, "skipped": manifest.get("skipped", []), "sha256": metadata["sha256"]}
    about.update({k: v for k, v in manifest.items() if k not in about})
    with files.exclusive(target):
        _remove_leftovers(name)
        building = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=catalogues_dir()))
        try:
            files.write_tensors(building / CATALOGUE_FILE, tensors, metadata)
            files.write_json(building / MANIFEST_FILE, about)
            _swap_into_place(building, target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return target


def _swap_into_place(building: Path, target: Path) -> None:
    """Rename the complete folder ``building`` to ``target``; an old ``target`` is moved aside first and put back
    if the rename fails or is interrupted (a folder cannot be renamed over a non-empty one)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}") if target.exists() else None
    if old is not None:
        os.replace(target, old)
    try:
        os.replace(building, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(name: str) -> None:
    """Folders left by an import killed outright (``kill -9``, a power cut) between the renames: an old catalogue
    moved aside comes back when there is no current one, anything else is removed."""
    target = catalogues_dir() / name
    for stale in sorted(catalogues_dir().glob(f".{name}.old-*")):
        if not target.exists() and (stale / CATALOGUE_FILE).is_file():
            os.replace(stale, target)
        else:
            shutil.rmtree(stale, ignore_errors=True)
    for stale in catalogues_dir().glob(f".{name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _header(path: Path) -> tuple[ImageSpec, dict[str, str], list[str]]:
    """The spec, metadata and tensor names of the catalogue file ``path``; ``ValueError`` naming what is wrong."""
    if not path.is_file():
        raise ValueError(f"{path.name} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata, keys = f.metadata() or {}, list(f.keys())
    except Exception as err:  # safetensors raises its own error types for a bad header or a cut file
        raise ValueError(f"{path.name} cannot be read ({_one_line(err)})") from err
    if metadata.get("format") != FORMAT or "sha256" not in metadata:
        raise ValueError(f"{path.name} is not a prodlab catalogue (no {FORMAT} metadata)")
    try:
        spec = ImageSpec.from_json(json.loads(metadata["spec"]))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path.name} has no valid image spec ({_one_line(err)})") from err
    return spec, metadata, keys


def _verified(path: Path, keep: bool = True) -> tuple[ImageSpec, dict[str, torch.Tensor], dict[str, str]]:
    """The spec, tensors and metadata of ``path`` after checking the content against its recorded SHA-256.

    ``keep=False`` (a listing) reads one tensor at a time and returns only their shapes' first sizes as empty
    tensors, so listing a large catalogue costs one tensor's memory, not the whole file's.
    """
    spec, metadata, keys = _header(path)
    digest, tensors = hashlib.sha256(), {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in sorted(keys):
                tensor = f.get_tensor(key)
                _hash_tensor(digest, key, tensor)
                tensors[key] = tensor if keep else torch.empty(tensor.shape[0], 0)
    except Exception as err:  # a file cut short after its header fails here
        raise ValueError(f"{path.name} cannot be read ({_one_line(err)})") from err
    if digest.hexdigest() != metadata["sha256"]:
        raise ValueError(f"{path.name} is corrupt (its content does not match the SHA-256 it records)")
    if keep:
        _check_tensors(spec, tensors)
    return spec, tensors, metadata


def read_catalogue(name: str) -> tuple[ImageSpec, dict[str, torch.Tensor]]:
    """The spec and tensors of catalogue ``name``, verified by the SHA-256 its metadata records; a missing or
    damaged catalogue is a :class:`CatalogueError` whose one line says what to do.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    try:
        folder = catalogue_dir(name)
    except ValueError as err:
        raise CatalogueError(f"no catalogue {name!r}: {_one_line(err)}") from err
    path = folder / CATALOGUE_FILE
    if not folder.is_dir():
        raise CatalogueError(f"no catalogue {name!r} in {catalogues_dir()}: make it with "
                             f"{IMPORT_HINT.format(name=name)} (python -m prodlab data list shows the catalogues)")
    try:
        spec, tensors, _ = _verified(path)
    except ValueError as err:
        raise CatalogueError(f"catalogue {name!r} is damaged: {_one_line(err)}; import it again with "
                             f"{IMPORT_HINT.format(name=name)}") from err
    return spec, tensors


def _info(folder: Path) -> CatalogueInfo:
    """What :func:`list_catalogues` shows of ``folder``: verified, or its problem in one line."""
    path = folder / CATALOGUE_FILE
    try:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key in _LISTED:
        return _LISTED[key]
    try:
        spec, tensors, metadata = _verified(path, keep=False)
    except ValueError as err:
        spec, source = None, ""
        try:  # what the manifest still says helps the user recognise a damaged catalogue
            about: dict[str, Any] = files.read_json(folder / MANIFEST_FILE)
            spec, source = ImageSpec.from_json(about["spec"]), str(about.get("source", ""))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return CatalogueInfo(folder.name, spec, {}, source, folder, _one_line(err))
    counts = {split: int(tensors[f"{split}_images"].shape[0]) for split in SPLITS}
    info = CatalogueInfo(folder.name, spec, counts, metadata.get("source", ""), folder)
    if key is not None:
        _LISTED[key] = info
    return info


def list_catalogues() -> list[CatalogueInfo]:
    """Every catalogue under :func:`catalogues_dir`, by name: each is verified, and a damaged one is listed with its
    problem rather than raised, so one bad folder never hides the others. Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    root = catalogues_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and NAME_PATTERN.fullmatch(folder.name) and folder.name != fashion_mnist.NAME:
            found.append(_info(folder))
    return found
