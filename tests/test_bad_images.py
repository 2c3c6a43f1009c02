"""Inputs that cannot break it (issue 18): every odd file a user can give is answered or refused in one line.

A corpus of malformed and unusual files, made here in a temporary folder, and Hypothesis-generated images and
corrupted bytes drive the two entry points that open a user's image: ``imageio.to_product_image`` (``prodlab
search IMAGE``, the explorer) and ``edit.product_image`` (notebook 05). Each input must come back as a 1 x 28 x 28
thumbnail in [0, 1] or as an ``ImageError``; any other exception is a bug. Two real decompression bombs are written
by a streaming PNG encoder (no pixels in memory) to measure what refusing them costs, and the CLI is checked to
answer one with one line.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from prodlab import config, edit, imageio

ENTRY_POINTS: dict[str, Callable[[Path | Image.Image], torch.Tensor]] = {
    "imageio.to_product_image": imageio.to_product_image, "edit.product_image": edit.product_image}
MEMORY_LIMIT_MB = 500  # the bound for a 12000 x 12000 image


def write_png(path: Path, width: int, height: int, channels: int = 1, bit_depth: int = 8,
              box: tuple[int, int, int, int] | None = None) -> Path:
    """A valid PNG, white with a black ``box`` (left, top, right, bottom), encoded row by row: a 30000 x 30000
    image is written without ever holding its pixels, the way a decompression bomb is made."""
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    row_bytes = (width * channels * bit_depth + 7) // 8
    white = b"\x00" + b"\xff" * row_bytes
    marked = white
    if box is not None:
        assert bit_depth in (8, 16), "a box is drawn in 8- and 16-bit images"
        row = np.full((width, channels), 2**bit_depth - 1, dtype=">u2" if bit_depth == 16 else np.uint8)
        row[box[0] : box[2], : min(channels, 3)] = 0
        marked = b"\x00" + row.tobytes()
    compressor, parts = zlib.compressobj(1), []
    for y in range(height):
        inside = box is not None and box[1] <= y < box[3]
        parts.append(compressor.compress(marked if inside else white))
    parts.append(compressor.flush())
    path.write_bytes(png_bytes(width, height, b"".join(parts), colour_type, bit_depth))
    return path


def png_bytes(width: int, height: int, idat: bytes, colour_type: int = 0, bit_depth: int = 8) -> bytes:
    """A PNG file's bytes: signature, a header declaring ``width`` x ``height``, ``idat`` as the pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def check_answered_or_refused(source: Path | Image.Image) -> str:
    """Run ``source`` through both entry points; return "answered" or "refused" (the same for both)."""
    outcomes = set()
    for name, entry in ENTRY_POINTS.items():
        try:
            x = entry(source)
        except imageio.ImageError as err:
            message = str(err)
            assert "\n" not in message and message, f"{name}: a refusal is one line: {message!r}"
            if isinstance(source, Path):
                assert str(source) in message, f"{name}: the message names the file: {message}"
            outcomes.add("refused")
            continue
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32, (name, x.shape, x.dtype)
        assert torch.isfinite(x).all() and float(x.min()) >= 0.0 and float(x.max()) <= 1.0, name
        outcomes.add("answered")
    assert len(outcomes) == 1, f"the entry points disagree on {source}: {outcomes}"
    return outcomes.pop()


def _photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A dark product on a light background in any mode."""
    arr = np.full((height, width), 240, dtype=np.uint8)
    arr[height // 4 : 3 * height // 4 + 1, width // 3 : 2 * width // 3 + 1] = 30
    return Image.fromarray(arr).convert(mode)


def _corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected outcome), every file made here."""
    corpus: dict[str, tuple[Path, str]] = {}

    def add(name: str, expected: str, make: Callable[[Path], object] | None = None) -> None:
        path = folder / name
        if make is not None:
            make(path)
        corpus[name] = (path, expected)

    add("tiny-1x1.png", "refused", lambda p: Image.new("L", (1, 1), 0).save(p))  # uniform: no product in it
    add("tiny-2x1.png", "answered", lambda p: Image.fromarray(np.array([[0, 255]], np.uint8)).save(p))
    add("line-1x3000.png", "answered", lambda p: _photo(1, 3000, "L").save(p))
    add("huge-declared.png", "refused", lambda p: p.write_bytes(  # a valid header, 100000 x 100000, no data
        png_bytes(100_000, 100_000, zlib.compress(b"\x00" * 64))))
    add("large-declared.png", "refused", lambda p: p.write_bytes(  # 10000 x 6000: under Pillow's limits, over ours
        png_bytes(10_000, 6000, zlib.compress(b"\x00" * 64))))
    add("short-data.png", "refused", lambda p: p.write_bytes(png_bytes(300, 200, zlib.compress(b"\x00" * 64))))
    add("truncated.png", "refused", lambda p: p.write_bytes(_encoded(_photo(200, 150), "PNG")[:300]))
    add("truncated.jpg", "refused", lambda p: p.write_bytes(_encoded(_photo(200, 150), "JPEG")[:200]))
    add("text.png", "refused", lambda p: p.write_text("not an image, only its name says so\n"))
    add("svg.png", "refused", lambda p: p.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>'))
    add("grey-16bit.png", "answered", lambda p: Image.fromarray(
        np.asarray(_photo(300, 200, "L"), dtype=np.uint16) * 257).save(p))
    add("rgb-16bit.png", "answered", lambda p: write_png(
        p, 300, 200, channels=3, bit_depth=16, box=(100, 50, 200, 150)))
    add("cmyk.jpg", "answered", lambda p: _photo(300, 200, "CMYK").save(p))
    add("cmyk.tif", "answered", lambda p: _photo(300, 200, "CMYK").save(p))
    add("palette-transparent.png", "answered", lambda p: _photo(300, 200, "P").save(p, transparency=0))
    add("transparent-only.png", "refused", lambda p: Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(p))
    add("animated.gif", "refused", lambda p: _photo(100, 80, "P").save(
        p, save_all=True, append_images=[_photo(80, 100, "P")]))
    add("still.gif", "answered", lambda p: _photo(100, 80, "P").save(p))
    add("float.tif", "answered", lambda p: _photo(100, 80, "F").save(p))
    add("bilevel.bmp", "answered", lambda p: _photo(100, 80, "L").convert("1", dither=Image.Dither.NONE).save(p))
    add("directory.png", "refused", lambda p: p.mkdir())
    add("zero-bytes.png", "refused", lambda p: p.write_bytes(b""))
    add("missing.png", "refused")
    return corpus


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def test_every_file_in_the_corpus_is_answered_or_refused_as_expected(tmp_path):
    for name, (path, expected) in _corpus(tmp_path).items():
        assert check_answered_or_refused(path) == expected, name


def test_an_unreadable_file_is_refused(tmp_path, monkeypatch):
    """chmod 000 where that denies reading (not root); as root, which reads anything, the same PermissionError
    is raised by a patched ``Path.open``, as open(2) gives it to any other user."""
    path = tmp_path / "unreadable.png"
    _photo(100, 80).save(path)
    path.chmod(0)
    if os.geteuid() == 0:
        real_open = Path.open
        monkeypatch.setattr(Path, "open", lambda self, *a, **k: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied")) if self == path else real_open(self, *a, **k))
    for entry in ENTRY_POINTS.values():
        with pytest.raises(imageio.ImageError, match="unreadable.png: permission denied"):
            entry(path)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 400), height=st.integers(1, 400),
       mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16"]),
       fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]), seed=st.integers(0, 2**16))
@example(width=28, height=28, mode="L", fmt="PNG", seed=1)  # once gave a pixel of 1.0000001 (float32 rounding)
def test_generated_images_are_answered_or_refused(width, height, mode, fmt, seed):
    """Random noise or a random rectangle, any mode, saved in any format that takes that mode."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width), dtype=np.uint8) if seed % 2 else _photo(width, height, "L")
    img = Image.fromarray(np.asarray(arr, np.uint8)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img, dtype=np.uint16) * 257)
    check_answered_or_refused(img)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"generated.{fmt.lower()}"
        try:
            img.save(path, format=fmt)
        except (OSError, ValueError, KeyError):  # this format cannot store this mode: nothing to open
            return
        check_answered_or_refused(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]), data=st.data())
def test_corrupted_files_are_answered_or_refused(fmt, data):
    """A valid file with its tail cut off, or with bytes overwritten anywhere after the signature."""
    raw = bytearray(_encoded(_photo(60, 40), fmt))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(1, len(raw) - 1), label="keep")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            raw[data.draw(st.integers(4, len(raw) - 1), label="at")] = data.draw(st.integers(0, 255), label="byte")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"corrupt.{fmt.lower()}"
        path.write_bytes(bytes(raw))
        check_answered_or_refused(path)


# ---------------------------------------------------------------- decompression bombs and memory

@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {"30000": write_png(folder / "bomb-30000.png", 30_000, 30_000, bit_depth=1),  # 900 MP, 110 kB on disk
            "12000": write_png(folder / "big-12000.png", 12_000, 12_000),  # 144 MP: Pillow warns, we refuse
            "7000": write_png(folder / "big-7000.png", 7000, 7000, channels=4,  # 49 MP: allowed, decoded
                              box=(2000, 3000, 5000, 4500))}


MEASURE = """
import json, resource, sys, warnings
from pathlib import Path


def peak_mb():  # this process image's peak resident memory: VmHWM, which starts afresh at exec (Linux) ...
    status = Path("/proc/self/status")
    if status.exists():
        return int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ... ru_maxrss may keep the parent's


warnings.simplefilter("error")  # a DecompressionBombWarning (or any other) escaping is a failure
from prodlab import imageio
base = peak_mb()
try:
    x = imageio.to_product_image(sys.argv[1]); outcome = f"answered {tuple(x.shape)}"
except imageio.ImageError as err:
    outcome = f"refused: {err}"
print(json.dumps({"outcome": outcome, "baseline_mb": base, "peak_mb": peak_mb()}))
"""


def _measure(path: Path) -> dict:
    """Open ``path`` in a fresh interpreter: the outcome, and the peak resident memory (MB) after importing
    prodlab (PyTorch alone is about 700 MB here) and after opening the image; the difference is the image's cost.

    ``getrusage``'s ru_maxrss is not used under Linux: a child started by vfork/exec inherits the parent's peak
    (here pytest's, 1 GB), so it would measure pytest, not the image."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=config.REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["30000", "12000"])
def test_a_decompression_bomb_is_refused_before_decoding_in_bounded_memory(bombs, name):
    result = _measure(bombs[name])
    print(name, result)
    assert result["outcome"].startswith(f"refused: {bombs[name]}: "), result
    assert "refused before decoding" in result["outcome"] and "megapixels" in result["outcome"], result
    assert result["peak_mb"] - result["baseline_mb"] < 20, result  # the header only: nothing was decoded


def test_the_largest_allowed_image_is_decoded_once_then_shrunk(bombs):
    result = _measure(bombs["7000"])
    print("7000", result)
    assert result["outcome"] == "answered (1, 28, 28)", result
    decoded_mb = 7000 * 7000 * 4 / 2**20  # RGBA, 187 MB: decoded once, every conversion after is on 1 megapixel
    assert result["peak_mb"] - result["baseline_mb"] < decoded_mb + 100, result
    assert result["peak_mb"] - result["baseline_mb"] < MEMORY_LIMIT_MB, result


def test_the_cli_answers_a_bomb_with_one_line_and_status_1(bombs):
    done = subprocess.run([sys.executable, "-m", "prodlab", "search", str(bombs["30000"])], capture_output=True,
                          text=True, timeout=120, cwd=config.REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done
    assert done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bomb-30000.png: 900 megapixels" in lines[0], lines
