"""Fixtures shared by several test modules. Each section is self-contained: its own imports' use, helpers and
fixtures, so sections can be added or removed independently."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# ---------------------------------------------------------------- the Makefile's targets
# (tests/test_packaging.py, tests/test_student.py)

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def make_recipe(target: str) -> str:
    """The recipe of Makefile ``target`` (its lines up to the next blank line), ``$(QUICK_PYTEST)`` written out as
    the Makefile defines it, so that a test reads the command that runs."""
    makefile = MAKEFILE.read_text(encoding="utf-8")
    quick = makefile.split("\nQUICK_PYTEST :=", 1)[1].split("\n\n", 1)[0].split("\ntest:", 1)[0]
    return makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0].replace("$(QUICK_PYTEST)", quick)


# ---------------------------------------------------------------- loopback ports and the headless browser
# (tests/test_browser.py, tests/test_app.py, tests/test_book.py, tests/test_ddp.py)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

BROWSER_MISSING = ("no Chromium installed (Debian: apt-get install chromium)" if CHROMIUM is None else
                   "Playwright is not installed (pip install playwright)" if sync_playwright is None else None)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}  # CI installs both: there a skip would hide a gap
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None and not IN_CI, reason=str(BROWSER_MISSING))


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now (a server or a process group takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- a folder of the user's own product photos
# (chapter 09, ``python -m prodlab data import``: tests/test_import.py, tests/test_any_images.py)

PHOTO_SHAPES = ("disc", "square", "triangle", "stripes", "ring", "cross", "diamond", "bar")
ORIENTATION = 0x0112  # the EXIF tag that says how a camera held the phone


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Where product ``shape`` of radius ``r`` covers a grid of offsets ``dx``, ``dy`` from its centre."""
    box = np.maximum(abs(dx), abs(dy))
    dist = np.hypot(dx, dy)
    masks = {
        "disc": dist < r,
        "square": box < 0.85 * r,
        "triangle": (abs(dy) < 0.8 * r) & (abs(dx) < 0.5 * (dy + 0.8 * r)),
        "stripes": (box < 0.85 * r) & (np.floor((dy + r) * 3.0 / r) % 2 == 0),
        "ring": (dist < r) & (dist > 0.55 * r),
        "cross": ((abs(dx) < 0.3 * r) & (abs(dy) < r)) | ((abs(dy) < 0.3 * r) & (abs(dx) < r)),
        "diamond": abs(dx) + abs(dy) < r,
        "bar": (abs(dx) < 0.35 * r) & (abs(dy) < r),
    }
    return masks[shape]


def product_photo(rng: np.random.Generator, shape: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic product photo: ``shape`` in a random saturated colour, placed with some jitter on a light,
    slightly tinted studio background, with mild sensor noise. Returns RGB uint8 H x W x 3 and the product mask."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size * 2.0 - 1.0
    cx, cy = rng.uniform(-0.15, 0.15, 2)
    mask = _shape_mask(shape, xx - cx, yy - cy, rng.uniform(0.5, 0.7))
    background = rng.uniform(228, 250) + rng.uniform(-4, 4, 3)
    colour = rng.uniform(0, 255, 3)
    colour[rng.integers(3)] = rng.uniform(0, 90)  # at least one dark channel: a saturated colour
    luminance = float(colour @ (0.299, 0.587, 0.114))
    colour *= min(1.0, 150.0 / max(luminance, 1.0))  # darker than the studio, in grey too (the 16-bit grey files)
    pixels = np.where(mask[..., None], colour, background) + rng.normal(0.0, 3.0, (size, size, 3))
    return np.clip(pixels, 0, 255).round().astype(np.uint8), mask


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` (a decompression bomb's) with a few bytes of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\xff" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _save(rgb: np.ndarray, mask: np.ndarray, folder: Path, stem: str, kind: str) -> str:
    """Write one photo as file ``kind`` (plain JPEG or PNG, or an odd mode); return the file's name."""
    img = Image.fromarray(rgb)
    if kind == "RGBA":  # a cut-out: transparent background, with black (not white) under the transparency
        rgba = np.dstack([np.where(mask[..., None], rgb, 0), np.where(mask, 255, 0)]).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(folder / f"{stem}.png")
        return f"{stem}.png"
    if kind == "P":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(folder / f"{stem}.png")
        return f"{stem}.png"
    if kind == "CMYK":
        img.convert("CMYK").save(folder / f"{stem}.jpg", quality=92)
        return f"{stem}.jpg"
    if kind == "I;16":  # 16-bit grey, the full 0..65535 range
        grey = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(folder / f"{stem}.png")
        return f"{stem}.png"
    if kind == "EXIF":  # stored turned a quarter left; the EXIF tag says: rotate 90 degrees clockwise to show it
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        img.transpose(Image.Transpose.ROTATE_90).save(folder / f"{stem}.jpg", quality=92, exif=exif.tobytes())
        return f"{stem}.jpg"
    suffix = "jpg" if kind == "JPEG" else "png"
    img.save(folder / f"{stem}.{suffix}", **({"quality": 90} if kind == "JPEG" else {}))
    return f"{stem}.{suffix}"


def _write_broken(root: Path, classes: list[str], rng: np.random.Generator, size: int) -> dict[str, str]:
    """The files a real folder holds that cannot be used, spread over the class folders; name -> relative path."""
    pick = [root / classes[i % len(classes)] for i in range(5)]
    broken = {"empty": pick[0] / "empty.jpg", "truncated": pick[1] / "truncated.jpg",
              "not_image": pick[2] / "notes.png", "tiny": pick[3] / "tiny.png", "bomb": pick[4] / "huge.png",
              "text": pick[0] / "readme.txt", "hidden": root / ".DS_Store", "hidden_in_class": pick[1] / ".DS_Store"}
    broken["empty"].write_bytes(b"")
    rgb, _ = product_photo(rng, "disc", size * 2)
    Image.fromarray(rgb).save(broken["truncated"], quality=95)
    data = broken["truncated"].read_bytes()
    broken["truncated"].write_bytes(data[: len(data) * 3 // 5])
    broken["not_image"].write_text("These are my notes, not a picture.\n", encoding="utf-8")
    Image.fromarray(rgb[:4, :4]).save(broken["tiny"])
    _png_header_only(broken["bomb"], 30000, 30000)
    broken["text"].write_text("photos of our products\n", encoding="utf-8")
    for key in ("hidden", "hidden_in_class"):
        broken[key].write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    return {key: path.relative_to(root).as_posix() for key, path in broken.items()}


def make_photo_folder(root: Path, classes: int = 5, per_class: int = 40, size: int = 64, seed: int = 0,
                      broken: bool = True) -> dict:
    """Write a folder of learnable synthetic colour product photos in ImageFolder layout under ``root``.

    Each class is one simple shape (:data:`PHOTO_SHAPES`) in a random colour on a light studio background, the
    files mixed JPEG and PNG, the last few of each class in a subfolder; in each class one RGBA cut-out, one
    palette PNG, one CMYK JPEG and one 16-bit grey PNG, and in the first class one JPEG rotated by EXIF. With
    ``broken``, files that cannot be used are added (see :func:`_write_broken`). Returns what was written:
    ``root``, ``classes`` (sorted names), ``per_class`` (usable images per class), ``images`` (usable in all),
    ``modes`` (odd mode -> relative paths), ``broken`` (kind -> relative path) and ``size``.
    """
    if not 2 <= classes <= len(PHOTO_SHAPES) or per_class < 8:
        raise ValueError(f"2 to {len(PHOTO_SHAPES)} classes of at least 8 photos each")
    rng = np.random.default_rng(seed)
    names = sorted(PHOTO_SHAPES[:classes])
    modes: dict[str, list[str]] = {"RGBA": [], "P": [], "CMYK": [], "I;16": [], "EXIF": []}
    odd = {1: "RGBA", 2: "P", 3: "CMYK", 4: "I;16"}
    for c, shape in enumerate(names):
        for i in range(per_class):
            folder = root / shape / ("more" if i >= per_class - 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            kind = odd.get(i, "EXIF" if (c, i) == (0, 5) else ("JPEG" if i % 2 else "PNG"))
            rgb, mask = product_photo(rng, shape, size)
            written = _save(rgb, mask, folder, f"{shape}_{i:03d}", kind)
            if kind in modes:
                modes[kind].append((folder / written).relative_to(root).as_posix())
    info = {"root": root, "classes": names, "per_class": dict.fromkeys(names, per_class),
            "images": classes * per_class, "modes": modes, "broken": {}, "size": size}
    if broken:
        info["broken"] = _write_broken(root, names, rng, size)
    return info


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> dict:
    """The default photo folder (5 classes of 40 photos, 64 x 64, with broken files), written once per session;
    read-only for the tests that use it."""
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


# ---------------------------------------------------------------- a data home and runs folder of a test's own
# (module-scoped fixtures of tests/test_any_images.py, tests/test_attribute_ruler.py, tests/test_gan_attributes.py,
# tests/test_diffusion_attributes.py)

@contextlib.contextmanager
def own_data_home(home: Path) -> Iterator[Path]:
    """Point prodlab's data home and runs folder at ``home``, in quick mode, while the block runs: catalogues written
    or imported there and runs trained there stay there. The data sets read before and meanwhile are forgotten."""
    from prodlab import config, datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.DATA_ENV, str(home))
        mp.setenv(config.QUICK_ENV, "1")
        mp.setattr(config, "RUNS_DIR", home / "runs")
        datasets.forget()
        try:
            yield home
        finally:
            datasets.forget()


def write_attribute_catalogue(name: str, spec, source: str, n_train: int = 64, n_test: int = 16) -> None:
    """Catalogue ``name`` of random images of ``spec`` (an ``ImageSpec`` with attributes) in the current data home:
    ``n_train`` and ``n_test`` images with random classes and attribute values, from a fixed seed."""
    import torch

    from prodlab.datasets import store

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> dict[str, torch.Tensor]:
        return {"images": torch.randint(0, 256, (n, spec.height, spec.width, spec.channels), dtype=torch.uint8,
                                        generator=g),
                "labels": torch.randint(0, spec.n_classes, (n,), generator=g),
                "attributes": torch.stack([torch.randint(0, len(v), (n,), generator=g) for _, v in spec.attributes],
                                          1)}

    tensors = {f"{part}_{k}": v for part, n in (("train", n_train), ("test", n_test)) for k, v in split(n).items()}
    store.write_catalogue(name, spec, tensors, {"source": source})
