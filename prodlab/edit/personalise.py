"""Personalised edits (个性化编辑, chapter 05): interpolation, class transfer and measured latent directions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from prodlab import checkpoints, data, ruler
from prodlab.degrade import rng
from prodlab.edit.restore import product_image, shipped
from prodlab.models import gan as gan_models


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Straight line ``(1 - t) z0 + t z1`` for each ``t`` (T) between codes ``z0``, ``z1`` (d): T x d.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    t = t.reshape(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (Shoemake 1985): the direction along the great circle between the unit codes, the
    norm interpolated linearly between ``|z0|`` and ``|z1|``. (White 2016 applies Shoemake's formula to the raw
    vectors instead, another convention with the same end points.) Why: in d dimensions a N(0, I) code has norm
    about sqrt(d), but the straight line's midpoint has norm about sqrt(d / 2) (two independent codes are nearly
    orthogonal), a region the decoder almost never saw in training; slerp stays on the shell where the codes live.
    T x d.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    t = t.reshape(-1, 1)
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0, z1 / n1
    omega = torch.arccos((u0 * u1).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(z0: Tensor, z1: Tensor, steps: int = 9, spherical: bool = True) -> Tensor:
    """``steps`` codes from ``z0`` to ``z1`` (both ends included), spherical or linear: steps x d.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    t = torch.linspace(0.0, 1.0, steps)
    return slerp(z0, z1, t) if spherical else lerp(z0, z1, t)


@torch.no_grad()
def class_transfer(model: gan_models.GAN, z: Tensor, classes: Tensor | None = None) -> Tensor:
    """The same code ``z`` (N x d) drawn as every class of the conditional GAN: N x K x C x H x W (K classes).

    ``z`` carries what the classes share (pose, size, brightness), the label carries the category: "this product,
    but as a sneaker". ``classes``: the labels to draw (default all).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    if not model.conditional:
        raise ValueError("class transfer needs the class-conditional GAN (cdcgan)")
    classes = torch.arange(model.cfg.n_classes) if classes is None else classes
    rows = [model.render(z, torch.full((len(z),), int(c))) for c in classes]
    return torch.stack(rows, dim=1)


def brightness(x: Tensor) -> Tensor:
    """Intensity-weighted mean intensity ``sum x^2 / sum x``: how light the product's own pixels are (the black
    background does not count, so a small light product is as bright as a large one). Per image, in [0, 1].

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    flat = x.flatten(1)
    return flat.pow(2).sum(1) / flat.sum(1).clamp_min(1e-6)


def width(x: Tensor) -> Tensor:
    """Horizontal extent in pixels: ``sqrt(12)`` x the standard deviation of the column mass (the width of a
    uniform box: exactly for a continuous one, approximately for a few discrete columns). Per image.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    mass = x.sum(dim=(1, 2)).clamp_min(0)  # N x W: the mass of each column (channels and rows summed)
    p = mass / mass.sum(1, keepdim=True).clamp_min(1e-6)
    cols = torch.arange(x.shape[-1], dtype=x.dtype)
    mean = (p * cols).sum(1)
    return math.sqrt(12.0) * ((p * (cols - mean[:, None]).pow(2)).sum(1)).sqrt()


def height(x: Tensor) -> Tensor:
    """Vertical extent in pixels: ``sqrt(12)`` x the standard deviation of the row mass, as :func:`width` does for
    columns (a boot's shaft, a long dress). Per image. Not a shipped slider: exercise 05.3 builds one from it.

    Chapter 05 (notebooks/05_editing.ipynb), exercise 05.3.
    """
    return width(x.transpose(-1, -2))


def pattern(x: Tensor) -> Tensor:
    """Texture: mean absolute difference between neighbouring pixels inside the product, relative to its mean
    intensity (stripes, prints and knit score high, plain fabric low). Per image.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    return (dx + dy) / x.flatten(1).sum(1).clamp_min(1e-6)


PROPERTIES: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "brightness": (brightness, "darker → lighter"),
    "width": (width, "narrower → wider"),
    "pattern": (pattern, "plain → patterned"),
}
# The directions offered as sliders (measured: monotone, class kept). The dcgan is shipped and has directions too,
# but without a label its codes mix class and style: its directions change the class of far more products
# (notebook 05, §4.3), so it gets no sliders.
DIRECTION_MODELS = ("vae", "cdcgan")


@functools.cache
@torch.no_grad()
def _codes_and_images(name: str, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Codes, their decoded images and the class of each: encoded training products (VAE), prior samples of
    balanced classes (cdcgan) or prior samples with the class the ruler sees in them (dcgan)."""
    if name == "vae":
        model = shipped("vae")
        images, labels = data.load("train")
        pick = torch.randperm(len(images), generator=rng(seed))[:n]
        z = model.embed(data.to_float(images[pick]))
        return z, model.reconstruct(data.to_float(images[pick])), labels[pick]
    if name in ("dcgan", "cdcgan"):
        model = shipped(name)
        z = model.noise(n, rng(seed))
        if model.conditional:
            labels = checkpoints.balanced_labels(n, model.cfg.n_classes)
            return z, model.render(z, labels), labels
        images = model.render(z)
        r = ruler.load()
        return z, images, r.predict(r.features(images))  # unconditional: the class the ruler sees
    raise ValueError(f"latent directions exist for {', '.join(DIRECTION_MODELS)}, not {name!r}")


def _demean(v: Tensor, labels: Tensor) -> Tensor:
    out = v.clone()
    for c in labels.unique():
        out[labels == c] -= v[labels == c].mean(0)
    return out


@functools.cache
def direction(name: str, prop: str, n: int = 10_000, seed: int = 0) -> Tensor:
    """The latent direction of model ``name`` along which the property ``prop`` of ``PROPERTIES`` grows (cached).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return property_direction(name, PROPERTIES[prop][0], n, seed)


def property_direction(name: str, measure: Callable[[Tensor], Tensor], n: int = 10_000, seed: int = 0) -> Tensor:
    """The latent direction of model ``name`` along which ``measure`` (images -> one value each) grows, *within* a
    class.

    The covariance of the codes with the property, both centred per class: a smooth version of "mean code of the
    products with much of the property minus mean code of those with little". Centring per class makes the
    direction change the property and not the category (class means differ in every property: without it "wider"
    would mostly mean "turn the trousers into a coat"). Not the least-squares regression: that divides by each
    dimension's variance and so points into the VAE's inactive dimensions (codes all near 0), which the decoder
    ignores. Its length is one within-class standard deviation of the codes along it, so a step of ``t`` moves a
    product as far as products of its class typically differ (the unit of ``STEPS``). Deterministic for ``n``,
    ``seed``.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    z, images, labels = _codes_and_images(name, n, seed)
    y = measure(images)
    zc = _demean(z, labels)
    cov = zc.T @ _demean(y[:, None], labels)[:, 0]
    unit = cov / cov.norm()
    return unit * (zc @ unit).std()


STEPS = torch.linspace(-2.0, 2.0, 9)  # positions along a direction, in within-class standard deviations
SMALL_STEP = 0.5  # "small": within this many standard deviations the edit must keep the class


@torch.no_grad()
def render(name: str, z: Tensor, labels: Tensor | None = None) -> Tensor:
    """Codes decoded by shipped model ``name``: N x C x H x W in [0, 1] (``labels``: the cdcgan's classes; the
    unconditional models ignore them).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    model = shipped(name)
    if name == "vae":
        return model.decode(z)
    return model.render(z, labels if model.conditional else None)


@torch.no_grad()
def walk(name: str, z: Tensor, d: Tensor, steps: Tensor = STEPS, labels: Tensor | None = None) -> Tensor:
    """Decode ``z + t d`` for every ``t`` in ``steps``: N x T x C x H x W (``labels``: the cdcgan's classes).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return torch.stack([render(name, z + t * d, labels) for t in steps], dim=1)


def slider_values(z: Tensor, target: Tensor, steps: Mapping[str, Tensor]) -> Tensor:
    """The slider values ``t`` (one per direction, in ``steps``' order) that bring ``z + sum_p t_p steps[p]``
    closest to ``target`` (both 1 x d): least squares over the d x P matrix of directions, which need not be
    orthogonal (separate projections are right only when they are).

    Chapter 07 (notebooks/07_explorer.ipynb), exercise 07.1.
    """
    d = torch.stack(list(steps.values()), dim=1)
    return torch.linalg.lstsq(d, (target - z)[0]).solution


def direction_report(name: str, prop: str, n: int = 200, seed: int = 1,
                     measure: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    """How a direction behaves on ``n`` held-out codes: the property's mean at each step, the share of codes whose
    property is monotone along the strip, and the share whose class (the ruler's classifier) is unchanged within
    ``SMALL_STEP`` of the start (and, for comparison, along a random direction as long: how fragile the class
    is anyway). ``measure``: a new property function named ``prop`` (default: ``PROPERTIES[prop]``), measured the
    same way (exercise 05.3).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    z, _, labels = _codes_and_images(name, n, seed)
    d = direction(name, prop) if measure is None else property_direction(name, measure)
    strips = walk(name, z, d, STEPS, labels)
    fn = PROPERTIES[prop][0] if measure is None else measure
    values = torch.stack([fn(strips[:, i]) for i in range(len(STEPS))], dim=1)  # N x T
    monotone = (values.diff(dim=1) > 0).all(dim=1).float().mean()
    r = ruler.load()
    small = [i for i, t in enumerate(STEPS.tolist()) if abs(t) <= SMALL_STEP]
    centre = int(torch.argmin(STEPS.abs()))
    random_d = torch.randn(d.shape, generator=rng(seed)) * d.norm() / math.sqrt(len(d))
    kept = {}
    for key, strip in (("direction", strips), ("random", walk(name, z, random_d, STEPS, labels))):
        base = r.predict(r.features(strip[:, centre]))
        pred = torch.stack([r.predict(r.features(strip[:, i])) for i in small], dim=1)
        kept[key] = float((pred == base[:, None]).all(dim=1).float().mean())
    label = PROPERTIES[prop][1] if measure is None else f"less → more {prop}"
    return {"model": name, "property": prop, "label": label, "steps": STEPS.tolist(),
            "mean": values.mean(0).tolist(), "share_monotone": float(monotone),
            "class_kept_small_steps": kept["direction"], "class_kept_random_direction": kept["random"]}


@torch.no_grad()
def edit_real(image: Tensor, prop: str, steps: Tensor = STEPS) -> Tensor:
    """Edit a real product: encode it with the VAE, move along ``prop``'s direction, decode. T x C x H x W.

    ``image``: one image of the VAE's spec (``model.cfg.image``), in any form :func:`product_image` takes.
    Chapter 05 (notebooks/05_editing.ipynb).
    """
    vae = shipped("vae")
    x = product_image(image, vae.cfg.image)[None]
    return walk("vae", vae.embed(x), direction("vae", prop), steps)[0]
