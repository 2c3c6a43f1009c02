"""The colour catalogue: Fashion-MNIST's real product shapes as a shop's colour photos, built offline (issue 25).

No colour product-photo set can be downloaded here, so this module makes one, deterministically, from Fashion-MNIST:
every product is put on a 32 x 32 RGB canvas, given a named colour and a pattern, keeps the shading of its grey
original, casts a soft shadow, and sits on a light studio background. Colour and pattern are drawn uniformly and
independently of the class from a seeded generator, so each (class, colour, pattern) combination is about equally
common, and they are stored per image as attributes; :func:`caption` turns them into a shop's words ("a red
striped dress"). This is the one module that writes the colour catalogue's numbers (size, colours, patterns).

How one image is made (:func:`render`, all in float32, one seeded draw per image):

1. ``g``: the grey product in [0, 1], centred on the canvas; ``shape``: where the product is (``g`` above a low
   threshold, with small gaps closed by a 3 x 3 dilation then erosion);
2. ``shade``: ``g`` divided by the product's own brightest pixel, so a dark original and a bright one get the same
   range; the product is ``colour x (0.55 + 0.45 shade)`` plus a little white in the brightest parts (highlights);
3. the pattern (stripes, dots or checks, with a random phase and, for stripes, direction) paints the
   pattern colour (white, or light grey on a white product) over part of the product, shaded the same way;
4. the background is a light vertical gradient (a studio sweep), darkened under the product's blurred shape, moved
   one pixel down and right (the shadow); the product is laid over it.

Build it with ``python -m prodlab data colour`` (seconds; cached in the catalogue store like an imported folder).
Chapter 00 (notebooks/00_products.ipynb).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from prodlab import files
from prodlab.datasets import fashion_mnist, store
from prodlab.datasets.spec import ImageSpec

NAME = "colour"
VERSION = 1  # the recipe's version: a change to how images are made changes it, and the cache is rebuilt
SEED = 2025
SIZE = 32
COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.80, 0.10, 0.12)), ("orange", (0.96, 0.50, 0.08)), ("yellow", (0.96, 0.84, 0.16)),
    ("green", (0.14, 0.58, 0.22)), ("blue", (0.14, 0.30, 0.82)), ("purple", (0.50, 0.20, 0.66)),
    ("black", (0.10, 0.10, 0.11)), ("white", (0.97, 0.97, 0.96)),
)
PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
ADJECTIVES = {"plain": "", "stripes": "striped", "dots": "dotted", "checks": "checked"}
NOUNS = {"T-shirt/top": "top", "Trouser": "pair of {} trousers", "Pullover": "pullover", "Dress": "dress",
         "Coat": "coat", "Sandal": "sandal", "Shirt": "shirt", "Sneaker": "sneaker", "Bag": "bag",
         "Ankle boot": "ankle boot"}
# A shopper's other words for a class (text to product, chapter 10): each is a caption's noun too.
SYNONYMS = {"T-shirt/top": ("t-shirt",), "Trouser": ("pair of {} pants",), "Pullover": ("sweater",),
            "Coat": ("jacket",), "Sneaker": ("trainer",), "Bag": ("handbag",), "Ankle boot": ("boot",)}
ATTRIBUTES = (("colour", tuple(name for name, _ in COLOURS)), ("pattern", PATTERNS))
PATTERN_ON_WHITE = (0.60, 0.61, 0.64)  # a white product's pattern: light grey (white on white would not show, and a
# dark one would make white with dark checks look like black with white checks)
PATTERN_COLOUR = (0.97, 0.97, 0.96)
BACKGROUND_TOP, BACKGROUND_BOTTOM = 0.96, 0.88  # the studio sweep's brightness, top row and bottom row
BACKGROUND_TINT = (1.0, 0.99, 0.97)
SHADOW = 0.22  # how much the shadow darkens the background at its darkest
JITTER = 0.03  # each image's colour moves by at most this much per channel, so no two reds are the same
CHUNK = 5_000  # images rendered at once: bounds the memory of a build to about 100 MB


@dataclass(frozen=True)
class BuildReport:
    """What ``python -m prodlab data colour`` prints: the catalogue's spec, images per split and where it is.

    Chapter 00 (notebooks/00_products.ipynb).
    """

    spec: ImageSpec
    counts: dict[str, int]
    path: Path
    seconds: float
    built: bool


def caption(class_name: str, colour: str, pattern: str) -> str:
    """A shop's words for one product: ``caption("Dress", "red", "stripes") == "a red striped dress"``; a plain
    product gets no pattern word ("an orange coat"). Chapter 00 (notebooks/00_products.ipynb)."""
    return _phrase(NOUNS.get(class_name, ""), class_name, colour, pattern)


def phrasings(class_name: str, colour: str, pattern: str) -> tuple[str, ...]:
    """Every way the catalogue words one product: its :func:`caption`, then the same with each of the class's
    :data:`SYNONYMS` ("a blue t-shirt" beside "a blue top"). What a text model learns from, so that a shopper's word
    means the same product as the catalogue's. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return (caption(class_name, colour, pattern),
            *(_phrase(noun, class_name, colour, pattern) for noun in SYNONYMS.get(class_name, ())))


def _phrase(noun: str, class_name: str, colour: str, pattern: str) -> str:
    """``noun`` (a format string where the colour and pattern words go inside it) with its colour and pattern."""
    if not noun or colour not in dict(COLOURS) or pattern not in PATTERNS:
        raise ValueError(f"no caption for ({class_name!r}, {colour!r}, {pattern!r})")
    words = " ".join(w for w in (colour, ADJECTIVES[pattern]) if w)
    phrase = noun.format(words) if "{}" in noun else f"{words} {noun}"
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def captions(spec: ImageSpec, labels: torch.Tensor, attributes: torch.Tensor) -> list[str]:
    """The caption of every image of the catalogue (labels int64 N, attributes int64 N x 2: colour, pattern).

    Chapter 00 (notebooks/00_products.ipynb).
    """
    colours, patterns = spec.values("colour"), spec.values("pattern")
    return [caption(spec.class_names[c], colours[a], patterns[p])
            for c, (a, p) in zip(labels.tolist(), attributes.tolist(), strict=True)]


def _closing(mask: torch.Tensor) -> torch.Tensor:
    """Dilate then erode a N x 1 x H x W mask by 3 x 3: closes one-pixel gaps inside a product's shape."""
    grown = F.max_pool2d(mask, 3, stride=1, padding=1)
    return -F.max_pool2d(-grown, 3, stride=1, padding=1)


def pattern_masks(kind: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """Where each image's pattern paints (float N x size x size, 0 or 1): ``kind`` indexes :data:`PATTERNS`;
    ``params`` (int64 N x 3) holds the phase along rows and columns and, for stripes, the direction (0: horizontal).
    Stripes are 2 of every 6 pixels, dots a plus of 5 pixels on a 6-pixel grid, checks squares of 4.
    Chapter 00 (notebooks/00_products.ipynb)."""
    r = torch.arange(size).view(1, size, 1) + params[:, 0].view(-1, 1, 1)
    c = torch.arange(size).view(1, 1, size) + params[:, 1].view(-1, 1, 1)
    horizontal = (params[:, 2] == 0).view(-1, 1, 1)
    stripes = torch.where(horizontal, r % 6 < 2, c % 6 < 2)
    dr, dc = (r % 6 - 2).abs(), (c % 6 - 2).abs()
    dots = (dr + dc) <= 1
    checks = (r // 4 + c // 4) % 2 == 0
    plain = torch.zeros_like(checks)
    table = torch.stack([plain.expand_as(checks), stripes.expand_as(checks), dots.expand_as(checks), checks])
    return table[kind, torch.arange(len(kind))].float()


def silhouette(grey: torch.Tensor, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The grey products (uint8 N x h x w x 1) centred on the canvas, float N x 1 x size x size in [0, 1], and
    where the product is (1.0) and is not (0.0): the ``grey`` and ``shape`` of :func:`render_stages`.
    Chapter 00 (notebooks/00_products.ipynb); chapter 10 reads which latent positions lie on the product."""
    h, w = grey.shape[1:3]
    if size < max(h, w):
        raise ValueError(f"the canvas ({size}) must be at least as large as the product ({h} x {w})")
    top, left = (size - h) // 2, (size - w) // 2
    g = F.pad(grey[..., 0].float() / 255.0, (left, size - w - left, top, size - h - top)).unsqueeze(1)
    return g, _closing((g > 0.04).float())


def render_stages(grey: torch.Tensor, colour: torch.Tensor, pattern: torch.Tensor, generator: torch.Generator,
                  size: int = SIZE) -> dict[str, torch.Tensor]:
    """Every stage of colouring the grey products ``grey`` (uint8 N x h x w x 1) with ``colour`` and ``pattern``
    (int64 N, indices of :data:`COLOURS` and :data:`PATTERNS`), as float N x C x size x size in [0, 1]: ``grey``,
    ``shape``, ``shade``, ``pattern``, ``surface`` (colour and pattern before shading), ``product``,
    ``background`` (with the shadow) and ``photo`` (the module's docstring says what each step does).

    ``generator`` supplies each image's jitter and pattern phase, so the same seed gives the same images.
    Chapter 00 (notebooks/00_products.ipynb).
    """
    n = len(grey)
    g, shape = silhouette(grey, size)
    shade = g / g.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    jitter = (torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1) * JITTER
    params = torch.stack([torch.randint(0, 12, (n,), generator=generator),
                          torch.randint(0, 12, (n,), generator=generator),
                          torch.randint(0, 2, (n,), generator=generator)], 1)
    base = (torch.tensor([rgb for _, rgb in COLOURS])[colour].view(n, 3, 1, 1) + jitter).clamp(0, 1)
    white = torch.tensor([name == "white" for name, _ in COLOURS])[colour].view(n, 1, 1, 1)
    painted = torch.where(white, torch.tensor(PATTERN_ON_WHITE).view(1, 3, 1, 1),
                          torch.tensor(PATTERN_COLOUR).view(1, 3, 1, 1))
    where = pattern_masks(pattern, params, size).unsqueeze(1)
    surface = base * (1 - where) + painted * where
    product = surface * (0.55 + 0.45 * shade) + 0.2 * shade**3 * (1 - surface)
    rows = torch.linspace(BACKGROUND_TOP, BACKGROUND_BOTTOM, size).view(1, 1, size, 1)
    shadow = F.avg_pool2d(F.pad(shape, (2, 0, 2, 0))[..., :size, :size], 5, stride=1, padding=2)
    background = rows * torch.tensor(BACKGROUND_TINT).view(1, 3, 1, 1) * (1 - SHADOW * shadow)
    photo = background * (1 - shape) + product * shape
    return {"grey": g, "shape": shape, "shade": shade, "pattern": where, "surface": surface, "product": product,
            "background": background, "photo": photo.clamp(0, 1)}


def render(grey: torch.Tensor, colour: torch.Tensor, pattern: torch.Tensor, generator: torch.Generator,
           size: int = SIZE) -> torch.Tensor:
    """The colour photos of :func:`render_stages` as the catalogue stores them: uint8 N x size x size x 3.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    photo = render_stages(grey, colour, pattern, generator, size)["photo"]
    return photo.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def draw_attributes(n: int, generator: torch.Generator) -> torch.Tensor:
    """Colour and pattern of ``n`` products (int64 N x 2), each uniform and independent of the class and of each
    other. Chapter 00 (notebooks/00_products.ipynb)."""
    return torch.stack([torch.randint(0, len(COLOURS), (n,), generator=generator),
                        torch.randint(0, len(PATTERNS), (n,), generator=generator)], 1)


def build_split(grey: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour images (uint8 N x SIZE x SIZE x 3) and attributes (int64 N x 2) made from ``grey`` with ``seed``,
    rendered :data:`CHUNK` images at a time. Chapter 00 (notebooks/00_products.ipynb)."""
    generator = torch.Generator().manual_seed(seed)
    attributes = draw_attributes(len(grey), generator)
    images = torch.empty(len(grey), SIZE, SIZE, len(COLOURS[0][1]), dtype=torch.uint8)
    for start in range(0, len(grey), CHUNK):
        part = slice(start, start + CHUNK)
        images[part] = render(grey[part], attributes[part, 0], attributes[part, 1], generator)
    return images, attributes


def _recipe() -> dict:
    """What the manifest records of how the images were made; a stored catalogue with another recipe is rebuilt."""
    return {"version": VERSION, "seed": SEED, "size": SIZE, "colours": {name: rgb for name, rgb in COLOURS},
            "patterns": list(PATTERNS), "pattern_colour": PATTERN_COLOUR, "pattern_on_white": PATTERN_ON_WHITE,
            "background": [BACKGROUND_TOP, BACKGROUND_BOTTOM, BACKGROUND_TINT], "shadow": SHADOW, "jitter": JITTER,
            "source": f"{fashion_mnist.NAME} (train and test splits)"}


def is_current() -> bool:
    """Whether the stored colour catalogue exists, reads back verified and was made by this recipe.

    Chapter 00 (notebooks/00_products.ipynb).
    """
    try:
        store.read_catalogue(NAME)
        about = files.read_json(store.catalogue_dir(NAME) / store.MANIFEST_FILE)
    except (OSError, ValueError):
        return False
    return about.get("recipe") == json.loads(json.dumps(_recipe()))  # as JSON stores it (tuples become lists)


def make_split(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One split of the colour catalogue, made now from Fashion-MNIST (not read from the store): images (uint8
    N x SIZE x SIZE x 3), class labels and attributes (colour, pattern), exactly as :func:`build` stores them
    (train with seed ``SEED``, test with ``SEED + 1``). Chapter 00 (notebooks/00_products.ipynb)."""
    if split not in store.SPLITS:
        raise ValueError(f"split must be one of {', '.join(store.SPLITS)}, not {split!r}")
    grey, labels = fashion_mnist.load(split)
    images, attributes = build_split(grey, SEED + store.SPLITS.index(split))
    return images, labels.clone(), attributes


def name_colours(images: torch.Tensor, min_share: float = 0.03) -> torch.Tensor:
    """The colour of each product read from its pixels by a rule, no network (int64 N, indices of :data:`COLOURS`):
    the saturated pixels (the background, shadow, white and black are grey) vote for the nearest chromatic colour by
    direction in RGB; a product with fewer than ``min_share`` saturated pixels is black when that share of its
    pixels is dark, else white. The baseline a trained colour head must match.
    Chapter 00 (notebooks/00_products.ipynb)."""
    x = images.float() / 255  # N x H x W x 3
    bright, dull = x.amax(-1), x.amin(-1)
    saturated = ((bright - dull) / bright.clamp_min(1e-6) > 0.4) & (bright > 0.15)
    names = [name for name, _ in COLOURS]
    chromatic = [i for i, name in enumerate(names) if name not in ("black", "white")]
    ref = torch.tensor([COLOURS[i][1] for i in chromatic])
    nearest = (F.normalize(x, dim=-1) @ F.normalize(ref, dim=-1).T).argmax(-1)
    votes = torch.stack([(saturated & (nearest == k)).flatten(1).sum(1) for k in range(len(chromatic))], 1)
    share = saturated.flatten(1).float().mean(1)
    dark = (bright < 0.3).flatten(1).float().mean(1) > min_share
    grey_name = torch.where(dark, names.index("black"), names.index("white"))
    return torch.where(share >= min_share, torch.tensor(chromatic)[votes.argmax(1)], grey_name)


def build(force: bool = False) -> BuildReport:
    """Make (or, when it is current, verify) the colour catalogue: Fashion-MNIST's train and test splits rendered
    with seeds ``SEED`` and ``SEED + 1``, stored as catalogue :data:`NAME`. Chapter 00 (notebooks/00_products.ipynb).
    """
    start = time.perf_counter()
    if not force and is_current():
        spec, tensors = store.read_catalogue(NAME)
        counts = {split: len(tensors[f"{split}_labels"]) for split in store.SPLITS}
        return BuildReport(spec, counts, store.catalogue_dir(NAME), time.perf_counter() - start, built=False)
    tensors = {}
    for split in store.SPLITS:
        images, labels, attributes = make_split(split)
        tensors.update({f"{split}_images": images, f"{split}_labels": labels, f"{split}_attributes": attributes})
    spec = ImageSpec.measure(tensors["train_images"], fashion_mnist.CLASS_NAMES, ATTRIBUTES)
    manifest = {"source": "Fashion-MNIST, coloured by prodlab.datasets.colour", "seed": SEED, "recipe": _recipe()}
    path = store.write_catalogue(NAME, spec, tensors, manifest)
    counts = {split: len(tensors[f"{split}_labels"]) for split in store.SPLITS}
    return BuildReport(spec, counts, path, time.perf_counter() - start, built=True)
