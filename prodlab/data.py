"""Fashion-MNIST product images: find, verify, stage, cache, and serve them (article §3.3 steps 1-2).

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
import hashlib
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prodlab import config, files

if TYPE_CHECKING:  # for the annotations only: torchvision is imported where it is used (seconds to import)
    from torchvision.transforms import v2

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
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


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (data files, checkpoints). Chapter 00 verifies the data with it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if sha256(staged) != expected:
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
        tensors.get(f"{split}_images", torch.empty(0)).shape == (n, 28, 28)
        and tensors.get(f"{split}_labels", torch.empty(0)).shape == (n,)
        for split, n in SPLITS.items()
    )


@lru_cache(maxsize=4)
def _tensors(home: str, download: bool) -> dict[str, torch.Tensor]:
    # cache_path() is under ``home``, the lru_cache key; a damaged or incomplete cache is rebuilt
    return files.load_or_build(cache_path(), lambda: _staged_tensors(download), valid=_valid)


def load(split: str = "train", download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 28 x 28, product bright on black) and labels (int64) of ``split`` ('train' or 'test').

    Chapter 00 (notebooks/00_products.ipynb).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, not {split!r}")
    tensors = _tensors(str(config.data_home()), download)
    return tensors[f"{split}_images"], tensors[f"{split}_labels"]


def check(download: bool = True) -> DataReport:
    """Stage and verify from scratch (ignoring the cache), then rebuild the cache; for ``python -m prodlab data``.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    _tensors.cache_clear()
    report = stage(download)
    files.load_or_build(report.cache, _read_staged, refresh=True)
    return report


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28 in [0, 1] (§3.3 step 1: scale pixel values).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return images.unsqueeze(1).float().div(255.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N x 1 x 28 x 28 in [0, 1] -> uint8 N x 28 x 28 (clamped, rounded): what samples and snapshots store.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return x.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).reshape(-1, 28, 28)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range a tanh generator outputs (§3.3 step 1: normalisation).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return x * 2.0 - 1.0


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def showcase(per_class: int = 1, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in ``split``: the fixed products the chapters show."""
    images, labels = load(split)
    index = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(CLASS_NAMES))])
    return images[index], labels[index]


def class_means(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The average product of each class: float 10 x 28 x 28 in [0, 1].

    Chapter 00 (notebooks/00_products.ipynb).
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return torch.stack([x[labels == c].mean(0) for c in range(len(CLASS_NAMES))])


def mirror_asymmetry(means: torch.Tensor) -> torch.Tensor:
    """Relative L2 distance between each class-mean image and its mirror image.

    Near 0: the class looks the same mirrored, so a horizontal flip is a safe augmentation. Large (the
    shoes, which Fashion-MNIST photographs toe to the left): a flip makes products the catalogue never shows.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    flat, mirrored = means.flatten(1), means.flip(-1).flatten(1)
    return (flat - mirrored).norm(dim=1) / flat.norm(dim=1)


def augmentations() -> dict[str, v2.Transform]:
    """The §3.3 step 2 augmentations, each alone, on float images in [0, 1].

    Vertical flip is included as the counter-example: products are photographed upright, so an
    upside-down shoe is not a plausible catalogue image and teaches the model something false.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    from torchvision.transforms import v2  # torchvision is slow to import: only here and when building the cache

    return {
        "horizontal flip": v2.RandomHorizontalFlip(p=1.0),
        "shift (pad 3 + crop)": v2.RandomCrop(28, padding=3),
        "contrast jitter": v2.ColorJitter(brightness=0.3, contrast=0.5),
        "vertical flip (wrong)": v2.RandomVerticalFlip(p=1.0),
    }
