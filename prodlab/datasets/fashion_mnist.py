"""Fashion-MNIST, the workbook's first data set: its definition (:data:`SPEC`), and how its files are found,
verified, staged, cached and served (article §3.3 steps 1-2).

This is the one module that knows Fashion-MNIST's numbers (28 x 28 grey images, ten classes, their pixel
statistics); every other module takes them from :data:`SPEC` through ``prodlab.data``.

Look-up order for the four IDX files (plain or ``.gz``):
  1. ``$PRODLAB_DATA`` (or the repo's ``data/`` when it is unset), also in torchvision's ``FashionMNIST/raw`` layout;
  2. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``);
  3. a download through torchvision (needs internet).
The files are staged decompressed in torchvision's ``FashionMNIST/raw`` layout, verified by the SHA-256 of their
decompressed content (the Debian copy is recompressed, so ``.gz`` hashes differ from upstream), read with
``torchvision.datasets.FashionMNIST`` and cached as one safetensors file so later loads take milliseconds.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from prodlab import config, files
from prodlab.datasets.spec import ImageSpec

NAME = "fashion-mnist"
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# 28 x 28 grey products; the mean and standard deviation of the training pixels in [0, 1].
SPEC = ImageSpec(channels=1, height=28, width=28, class_names=CLASS_NAMES, mean=(0.2860,), std=(0.3530,))
SPLITS = {"train": 60_000, "test": 10_000}
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_NAME = "fashion-mnist-v1.safetensors"


class DataError(RuntimeError):
    """Fashion-MNIST is missing or corrupt; the message says what to do.

    Chapter 00 (notebooks/00_products.ipynb).
    """


@dataclass(frozen=True)
class DataReport:
    """Where the data came from and where it is staged (what ``python -m prodlab data`` prints).

    Chapter 00 (notebooks/00_products.ipynb).
    """

    source: str
    raw_dir: Path
    cache: Path


def remedies() -> str:
    """The three ways to get the data, for every error message.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    home = config.data_home()
    return (
        "Get Fashion-MNIST one of three ways:\n"
        "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (installs it in "
        f"{DEBIAN_DIR})\n"
        "  2. With internet: python -m prodlab data  (torchvision downloads it into "
        f"{home / 'FashionMNIST' / 'raw'})\n"
        "  3. By hand: copy the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
        f"     t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into {home}\n"
        f"     (or into any folder named by ${config.DATA_ENV})."
    )


def raw_dir() -> Path:
    """Where the four IDX files are staged (torchvision's ``FashionMNIST/raw`` layout). Chapter 00."""
    return config.data_home() / "FashionMNIST" / "raw"


def cache_path() -> Path:
    """The verified data set as one safetensors file, loaded in milliseconds. Chapter 00."""
    return config.cache_dir() / CACHE_NAME


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs() -> list[Path]:
    home = config.data_home()
    return [raw_dir(), home, DEBIAN_DIR]


def _stage_from(folder: Path) -> dict[str, Path] | None:
    """Copy (decompressing) the four files from ``folder`` into the raw dir; None if any is missing."""
    found = {name: _find(folder, name) for name in SHA256}
    if any(path is None for path in found.values()):
        return None
    target = raw_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name, path in found.items():
        dest = target / name
        if path == dest:
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        except (OSError, EOFError) as err:
            dest.unlink(missing_ok=True)
            raise DataError(f"Could not read {path}: {err}\nDelete or replace that file.\n{remedies()}") from err
    return found


def _download() -> None:
    """Ask torchvision to download the data into the data home (needs internet)."""
    # Imported here, not at the top: torchvision takes seconds to import and only building the cache needs it.
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(config.data_home()), train=train, download=True)


def stage(download: bool = True) -> DataReport:
    """Find the four files, stage them decompressed, verify them; raise ``DataError`` with remedies if impossible.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    sources: dict[str, Path] | None = None
    for folder in _candidate_dirs():
        sources = _stage_from(folder)
        if sources is not None:
            origin = str(folder)
            break
    if sources is None:
        looked = ", ".join(str(d) for d in _candidate_dirs())
        if not download:
            raise DataError(f"Fashion-MNIST was not found (looked in: {looked}).\n{remedies()}")
        try:
            _download()
        except Exception as err:  # torchvision raises several kinds (URLError, RuntimeError, OSError)
            raise DataError(
                f"Fashion-MNIST was not found (looked in: {looked}) and the download failed: {err}\n{remedies()}"
            ) from err
        sources = {name: raw_dir() / name for name in SHA256}
        origin = "downloaded by torchvision"
    for name, expected in SHA256.items():
        staged = raw_dir() / name
        if files.sha256(staged) != expected:
            staged.unlink()
            raise DataError(
                f"Corrupt data file: {sources[name]} (SHA-256 of its content does not match {name}).\n"
                f"Delete or replace that file.\n{remedies()}"
            )
    return DataReport(source=origin, raw_dir=raw_dir(), cache=cache_path())


def _read_staged() -> dict[str, torch.Tensor]:
    """The staged IDX files, read by torchvision, as the tensors of the cache file."""
    # Imported here, not at the top: torchvision takes seconds to import and only building the cache needs it.
    from torchvision.datasets import FashionMNIST

    tensors: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        ds = FashionMNIST(str(config.data_home()), train=split == "train", download=False)
        tensors[f"{split}_images"] = ds.data.contiguous()
        tensors[f"{split}_labels"] = ds.targets.to(torch.int64).contiguous()
    return tensors


def _staged_tensors(download: bool) -> dict[str, torch.Tensor]:
    stage(download)
    return _read_staged()


def _valid(tensors: dict[str, torch.Tensor]) -> bool:
    return all(
        tensors.get(f"{split}_images", torch.empty(0)).shape == (n, SPEC.height, SPEC.width)
        and tensors.get(f"{split}_labels", torch.empty(0)).shape == (n,)
        for split, n in SPLITS.items()
    )


@lru_cache(maxsize=4)
def _tensors(home: str, download: bool) -> dict[str, torch.Tensor]:
    # cache_path() is under ``home``, the lru_cache key; a damaged or incomplete cache is rebuilt
    return files.load_or_build(cache_path(), lambda: _staged_tensors(download), valid=_valid)


def load(split: str = "train", download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N x H x W x C, product bright on black) and labels (int64) of ``split`` ('train' or 'test').

    Chapter 00 (notebooks/00_products.ipynb).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, not {split!r}")
    tensors = _tensors(str(config.data_home()), download)
    return tensors[f"{split}_images"].unsqueeze(-1), tensors[f"{split}_labels"]


def check(download: bool = True) -> DataReport:
    """Stage and verify from scratch (ignoring the cache), then rebuild the cache; for ``python -m prodlab data``.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    _tensors.cache_clear()
    report = stage(download)
    files.load_or_build(report.cache, _read_staged, refresh=True)
    return report
