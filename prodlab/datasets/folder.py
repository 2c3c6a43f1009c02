"""Your own images in: a folder of product photos as a stored catalogue (``python -m prodlab data import DIR``).

Two layouts are read. **ImageFolder** (torchvision's): one subfolder per class, the class is the subfolder's name
and its images are found recursively under it. **Flat with labels**: a ``labels.csv`` in the folder lists
``file,class`` per line (a header line is optional), paths relative to the folder.

A real folder is not a clean data set: JPEG and PNG mixed, CMYK, 16-bit, transparency, palettes, phone photos
rotated by EXIF, and files that are not usable at all. Every file is decoded on its own by
``prodlab.imageio.open_image`` (header checked before decoding, so a decompression bomb is refused; shrunk to
1024 px first, so memory stays bounded whatever the file) and converted by ``imageio.colour_thumbnail``: RGB with
transparency on white, the longest side resized to ``size`` with antialiasing, the short side padded with the
image's border colour so nothing is stretched. What cannot be used is skipped and listed with its reason in one
line, never raised; a class with no usable image is dropped. The train/test split is stratified and seeded, so
the same folder and seed give the same catalogue bit for bit. Nothing is written until every file is converted,
and then atomically (``prodlab.datasets.store``): Ctrl-C at any moment leaves no partial catalogue.

Chapter 09 (notebooks/09_catalogue.ipynb).
"""

from __future__ import annotations

import csv
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from prodlab import files, imageio
from prodlab.datasets import store
from prodlab.datasets.spec import ImageSpec

LABELS_FILE = "labels.csv"
MIN_SIDE = 8  # pixels: a shorter side under this holds no product to learn from
MAX_SIZE = 256  # the largest --size: catalogues are for training on a laptop
MAX_LISTED = 1000  # hidden and non-image files listed one by one; beyond this they are counted in one line
Image.init()  # registers every format plug-in, so the extension list below is complete
IMAGE_EXTENSIONS = frozenset({ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
                             | {".mpo"})


class FolderError(ValueError):
    """A folder that cannot become a catalogue (one line); ``skipped`` holds the files skipped on the way, so the
    user sees why, e.g. why fewer than two classes were left. Chapter 09 (notebooks/09_catalogue.ipynb)."""

    def __init__(self, message: str, skipped: list[tuple[Path, str]] | None = None) -> None:
        super().__init__(message)
        self.skipped = list(skipped or [])


@dataclass(frozen=True)
class ImportReport:
    """What an import made: the catalogue's name, spec and images per split, every skipped file (relative to the
    source folder) with its reason, the catalogue's folder and the time it took.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """

    name: str
    spec: ImageSpec
    counts: dict[str, int]
    skipped: list[tuple[Path, str]]
    path: Path
    seconds: float

    def lines(self) -> list[str]:
        """One line per skipped file, ``path: reason``, as the command line prints them."""
        return [f"{path}: {reason}" for path, reason in self.skipped]


@dataclass
class _Found:
    """The files a walk found: candidates (relative path, class name) and skipped ones, bounded in memory."""

    source: Path
    max_images: int
    candidates: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    unlisted: int = 0

    def add(self, rel: Path, label: str) -> None:
        if len(self.candidates) >= self.max_images:
            raise files.TooLarge(f"{self.source}: more than {self.max_images:,} image files, over the limit "
                                 "(max_images); refused before decoding: import a smaller folder or raise the limit")
        self.candidates.append((rel, label))

    def skip(self, rel: Path, reason: str, brief: bool = False) -> None:
        """Record a skipped file; ``brief`` ones (hidden, not images) beyond :data:`MAX_LISTED` are only counted."""
        if brief and len(self.skipped) >= MAX_LISTED:
            self.unlisted += 1
            return
        self.skipped.append((rel, reason))

    def all_skipped(self) -> list[tuple[Path, str]]:
        if not self.unlisted:
            return list(self.skipped)
        return self.skipped + [(Path("."), f"and {self.unlisted:,} more hidden or non-image files, not listed")]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(found: _Found, folder: Path, label: str | None) -> Iterator[Path]:
    """The image files under ``folder`` (relative to the source), sorted so the order never depends on the file
    system; hidden files and folders and files with no image extension are skipped as ``found`` records.
    Symbolic links to folders are not followed (a link may loop)."""
    for root, dirs, names in os.walk(folder):
        here = Path(root).relative_to(found.source)
        for d in sorted(d for d in dirs if _is_hidden(d)):
            found.skip(here / d, "hidden folder, not read", brief=True)
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(names):
            rel = here / name
            if _is_hidden(name):
                found.skip(rel, "hidden file", brief=True)
            elif rel == Path(LABELS_FILE) and label is None:
                continue
            elif Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                what = f"extension {Path(name).suffix}" if Path(name).suffix else "no extension"
                found.skip(rel, f"not an image file ({what})", brief=True)
            else:
                yield rel


def _find_image_folder(found: _Found) -> None:
    """ImageFolder layout: each non-hidden subfolder is a class, its images found recursively under it."""
    for entry in sorted(found.source.iterdir(), key=lambda p: p.name):
        rel = Path(entry.name)
        if _is_hidden(entry.name):
            found.skip(rel, "hidden folder, not read" if entry.is_dir() else "hidden file", brief=True)
        elif not entry.is_dir():
            found.skip(rel, "not in a class folder (one subfolder per class)", brief=True)
        else:
            for path in _walk(found, entry, entry.name):
                found.add(path, entry.name)


def _find_labelled(found: _Found) -> None:
    """Flat layout: the rows of ``labels.csv`` (``file,class``; a first row ``file,class`` is a header). A row whose
    file is missing, outside the folder, listed twice or not an image is skipped; files it does not list are too."""
    listed: set[Path] = set()
    with open(found.source / LABELS_FILE, newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or (line == 1 and [c.lower() for c in cells] == ["file", "class"]):
                continue
            where = f"{LABELS_FILE} line {line}"
            if len(cells) != 2 or not cells[0] or not cells[1]:
                found.skip(Path(LABELS_FILE), f"{where}: expected two columns, file,class; got {row}")
                continue
            rel = Path(cells[0])
            path = found.source / rel
            if rel.is_absolute() or ".." in rel.parts:
                found.skip(rel, f"{where}: the path leaves the folder; paths are relative to it")
            elif rel in listed:
                found.skip(rel, f"{where}: listed again (the first line's class is used)")
            elif not path.is_file():
                found.skip(rel, f"{where}: the file is missing")
            elif rel.suffix.lower() not in IMAGE_EXTENSIONS:
                found.skip(rel, f"{where}: not an image file (extension {rel.suffix or 'none'})")
            else:
                listed.add(rel)
                found.add(rel, cells[1])
    for rel in _walk(found, found.source, None):
        if rel not in listed:
            found.skip(rel, f"not listed in {LABELS_FILE}", brief=True)


def find_images(source: Path, max_images: int = 200_000) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]], str]:
    """The image files of ``source`` with their class names (relative paths, in a fixed order), the files skipped
    without decoding (hidden, not images, missing rows) and the layout (``"imagefolder"`` or ``"labels.csv"``).

    More than ``max_images`` candidates is refused (``files.TooLarge``) as soon as the walk finds one too many.
    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    source = Path(source)
    if not source.is_dir():
        raise FolderError(f"{source}: no such folder (give a folder of images: one subfolder per class, or "
                          f"{LABELS_FILE})")
    found = _Found(source, max_images)
    if (source / LABELS_FILE).is_file():
        _find_labelled(found)
        return found.candidates, found.all_skipped(), LABELS_FILE
    if not any(p.is_dir() and not _is_hidden(p.name) for p in source.iterdir()):
        raise FolderError(f"{source}: no class subfolders and no {LABELS_FILE}: put each class's images in a "
                          f"subfolder of its own (ImageFolder layout) or list them in {LABELS_FILE} (file,class)")
    _find_image_folder(found)
    return found.candidates, found.all_skipped(), "imagefolder"


def convert(path: Path, size: int) -> np.ndarray:
    """One image file as a catalogue image, uint8 ``size`` x ``size`` x 3; ``imageio.ImageError`` (one line,
    naming the file) if it cannot be used, including an image whose shorter side is under :data:`MIN_SIDE`.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF and palettes; the result or the skip says all
        img = imageio.open_image(path)
        if min(img.size) < MIN_SIDE:
            raise imageio.ImageError(f"{path}: too small, {img.width} x {img.height} pixels (the shorter side is "
                                     f"under {MIN_SIDE} px)")
        return imageio.colour_thumbnail(img, size, size)


def _reason(path: Path, err: Exception) -> str:
    """The one-line reason for a skipped file: imageio's message without the path it starts with."""
    message = " ".join(str(err).split())
    if isinstance(err, imageio.ImageError):
        return message.removeprefix(f"{path}: ")
    return f"the image cannot be decoded ({type(err).__name__}: {message})"


def _decode(source: Path, candidates: list[tuple[Path, str]], size: int,
            progress: bool) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Every candidate converted, one file at a time into one preallocated tensor: the images, the indices of the
    candidates that were usable, and the skipped ones with their reasons."""
    images = torch.empty((len(candidates), size, size, 3), dtype=torch.uint8)
    kept: list[int] = []
    skipped: list[tuple[Path, str]] = []
    with tqdm(candidates, desc="import", unit="image", disable=not progress) as bar:
        for i, (rel, _) in enumerate(bar):
            path = source / rel
            try:
                images[len(kept)] = torch.from_numpy(convert(path, size))
            except MemoryError:
                raise
            except Exception as err:  # any decoder failure of one file skips that file, with its reason
                skipped.append((rel, _reason(path, err)))
                continue
            kept.append(i)
    return images[: len(kept)], kept, skipped


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and test images: in each class ``round(n * test_fraction)`` images go to the test
    split, at least one when the class has two or more and never all of them; each split is then shuffled. One
    ``torch.Generator`` seeded with ``seed`` draws everything, so a seed gives the same split on every machine.

    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = min(len(members) - 1, max(1, int(len(members) * test_fraction + 0.5))) if len(members) > 1 else 0
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_idx, test_idx = torch.cat(train), torch.cat(test)
    return (train_idx[torch.randperm(len(train_idx), generator=generator)],
            test_idx[torch.randperm(len(test_idx), generator=generator)])


def _check_request(name: str, size: int, test_fraction: float, max_images: int) -> None:
    store.check_name(name)
    if not isinstance(size, int) or not MIN_SIDE <= size <= MAX_SIZE:
        raise ValueError(f"size must be a whole number of pixels from {MIN_SIDE} to {MAX_SIZE}, not {size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), not {test_fraction!r}")
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, not {max_images!r}")


def import_folder(source: Path, name: str, size: int = 32, seed: int = 0, test_fraction: float = 0.2,
                  max_images: int = 200_000, progress: bool = False) -> ImportReport:
    """Import the image folder ``source`` as catalogue ``name`` of ``size`` x ``size`` RGB images (see the module).

    Refused in one line, before anything is decoded: a bad name or size, a missing folder or layout, more than
    ``max_images`` image files, or more images than memory or disk can hold. After decoding, fewer than two
    classes with usable images is a :class:`FolderError` that carries the skipped files.
    Chapter 09 (notebooks/09_catalogue.ipynb).
    """
    start = time.perf_counter()
    _check_request(name, size, test_fraction, max_images)
    source = Path(source).expanduser().resolve()
    candidates, skipped, layout = find_images(source, max_images)
    files.check_memory(2 * len(candidates) * size * size * 3, f"{len(candidates):,} images of {size} x {size}")
    images, kept, bad = _decode(source, candidates, size, progress)
    skipped = sorted(skipped + bad, key=lambda s: str(s[0]))
    usable = [candidates[i] for i in kept]
    class_names = tuple(sorted({label for _, label in usable}))
    for dropped in sorted({label for _, label in candidates} - set(class_names)):
        skipped.append((Path(dropped) if layout == "imagefolder" else Path(LABELS_FILE),
                        f"class {dropped!r} dropped: none of its files is a usable image"))
    if len(class_names) < 2:
        raise FolderError(f"{source}: {len(class_names)} class(es) with usable images {list(class_names)}; a "
                          "catalogue needs at least 2 (the skipped files say why)", skipped)
    index = {c: i for i, c in enumerate(class_names)}
    labels = torch.tensor([index[label] for _, label in usable], dtype=torch.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    if len(test) == 0:
        raise FolderError(f"{source}: every class has one usable image; a test split needs a class with two",
                          skipped)
    tensors = {"train_images": images[train], "train_labels": labels[train],
               "test_images": images[test], "test_labels": labels[test]}
    del images
    spec = ImageSpec.measure(tensors["train_images"], class_names)
    manifest = {
        "source": str(source), "seed": seed, "layout": layout, "size": size, "test_fraction": test_fraction,
        "skipped": [[str(path), reason] for path, reason in skipped],
        "files": {split: [usable[i][0].as_posix() for i in idx.tolist()] for split, idx in
                  (("train", train), ("test", test))},
    }
    path = store.write_catalogue(name, spec, tensors, manifest)
    counts = {"train": len(train), "test": len(test)}
    return ImportReport(name, spec, counts, skipped, path, time.perf_counter() - start)
