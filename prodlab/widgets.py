"""Interactive explorers of the latent spaces (notebook 07): sliders, interpolation, inpainting, "find similar".

Every explorer is plain ipywidgets: a few controls and an ``ipywidgets.Image`` holding PNG bytes, so it works in
JupyterLab, in a headless ``jupyter nbconvert --execute`` run and in tests. A control's callback is one call to a
pure ``render_*`` function (tensors in, tensors out, unit-tested without widgets) and one PNG encoding; the
explorer keeps the last rendered tensor in ``.current`` so tests can check what is shown. Models are loaded once
when an explorer is built, so moving a slider only decodes one code (milliseconds). The latent directions of the
sliders (notebook 05, §4.3: 10,000 decoded codes per model) are a cached computation, ``explorer-directions``:
computed once (about 10 s), then read from ``data/cache/results`` (``python -m prodlab compute explorer-directions``
recomputes them), so an explorer builds in well under 2 s.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping

import ipywidgets as w
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from prodlab import cache, data, edit, search
from prodlab.datasets import DEFAULT
from prodlab.datasets.spec import ImageSpec

MODELS = {"GAN (dcgan)": "dcgan", "conditional GAN (cdcgan)": "cdcgan", "VAE": "vae"}
SLIDER_RANGE = 2.0  # the direction sliders span +- this many within-class standard deviations (edit.STEPS)
SCALE = 6  # screen pixels per image pixel


# ---------------------------------------------------------------- pure render functions


def png(images: Tensor, scale: int = SCALE, gap: int = 4) -> bytes:
    """Images (N x C x H x W or C x H x W, floats in [0, 1]; one channel or three) side by side, enlarged
    ``scale`` times without smoothing, separated by ``gap`` white pixels: PNG bytes (grey or RGB) for an
    ``ipywidgets.Image``.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    x = data.to_uint8(data.as_batch(images)).numpy()  # N x H x W x C
    n, height, width, channels = x.shape
    tile_h, tile_w = height * scale, width * scale
    strip = np.full((tile_h, n * (tile_w + gap) - gap, channels), 255, dtype=np.uint8)
    for i, img in enumerate(x):
        strip[:, i * (tile_w + gap) : i * (tile_w + gap) + tile_w] = img.repeat(scale, 0).repeat(scale, 1)
    buffer = io.BytesIO()
    Image.fromarray(strip[..., 0] if channels == 1 else strip).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_of(model: str) -> ImageSpec:
    """The image spec of shipped model ``model``: the size and classes of what it draws.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    return edit.shipped(model).cfg.image


def _class_options(image: ImageSpec) -> list[tuple[str, int]]:
    return [(name, i) for i, name in enumerate(image.class_names)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def code(model: str, seed: int) -> Tensor:
    """The prior code of ``seed`` for ``model`` (1 x latent_dim): the same seed always gives the same product.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    m = edit.shipped(model)
    dim = m.latent_dim if model == "vae" else m.cfg.latent_dim
    return torch.randn(1, dim, generator=_generator(seed))


@torch.no_grad()
def decode(model: str, z: Tensor, label: int = 0) -> Tensor:
    """Decode codes with ``model`` (the class ``label`` for the conditional GAN): N x C x H x W in [0, 1].

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    return edit.render(model, z, torch.full((len(z),), int(label)))


@cache.computation("explorer-directions", "the explorer's slider directions: edit.direction of each model and property")
def directions() -> cache.Result:
    """``edit.direction(model, prop)`` for every explorer model and property, keyed ``"model/prop"``; cached.

    Chapter 07 (notebooks/07_explorer.ipynb): the explorer's build reads these instead of decoding 10,000 codes per
    model each time.
    """
    return {f"{model}/{prop}": edit.direction(model, prop) for model in MODELS.values() for prop in edit.PROPERTIES}


def slider_direction(model: str, prop: str) -> Tensor:
    """The cached latent direction of ``prop`` for ``model`` (one step = one within-class standard deviation).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    return directions()[f"{model}/{prop}"]


def moved_code(z: Tensor, steps: Mapping[str, Tensor], offsets: Mapping[str, float]) -> Tensor:
    """``z + sum_prop offsets[prop] * steps[prop]``: a code moved along each slider's direction.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    for prop, t in offsets.items():
        if t:
            z = z + t * steps[prop]
    return z


def heel_height(x: Tensor) -> Tensor:
    """Mass-weighted mean row of the left half minus that of the right: how much higher a left-pointing shoe's back
    stands than its front (rows count down). Unchanged by darkening or by lifting the whole product. Per image.

    Chapter 07 (notebooks/07_explorer.ipynb), exercise 07.3: a property for a new slider.
    """
    rows, half = torch.arange(x.shape[-2], dtype=x.dtype), x.shape[-1] // 2
    mass = [part.sum(dim=(1, 3)) for part in (x[..., :half], x[..., half:])]  # N x H each: the mass of each row
    left, right = ((m * rows).sum(1) / m.sum(1).clamp_min(1e-6) for m in mass)
    return left - right


def render_latent(model: str, seed: int, offsets: Mapping[str, float], label: int = 0,
                  extra: Mapping[str, Tensor] | None = None) -> Tensor:
    """The product of ``seed``, moved ``offsets[prop]`` steps along each property's direction: the cached ones of
    ``edit.PROPERTIES``, or ``extra[prop]`` for a slider added later (exercise 07.3).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    extra = extra or {}
    steps = {prop: extra[prop] if prop in extra else slider_direction(model, prop)
             for prop, t in offsets.items() if t}
    return decode(model, moved_code(code(model, seed), steps, offsets), label)


def interpolation_ends(model: str, a: int, b: int) -> tuple[Tensor, Tensor]:
    """The two codes to morph between: catalogue items ``a`` and ``b`` encoded (VAE), or seeds ``a`` and ``b``
    (GANs, which have no encoder).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    if model == "vae":
        items = data.to_float(search.catalogue()[0][[a, b]])
        z = edit.shipped("vae").embed(items)
        return z[:1], z[1:]
    return code(model, a), code(model, b)


def mix_code(za: Tensor, zb: Tensor, mix: float, spherical: bool) -> Tensor:
    """The code a fraction ``mix`` of the way from ``za`` to ``zb`` (each 1 x d): on the great circle
    (``edit.slerp``) or the straight line (``edit.lerp``). 1 x d.

    Chapter 07 (notebooks/07_explorer.ipynb), exercise 07.2.
    """
    path = edit.slerp if spherical else edit.lerp
    return path(za[0], zb[0], torch.tensor([float(mix)]))


def render_interpolation(model: str, a: int, b: int, mix: float, spherical: bool, label: int = 0) -> Tensor:
    """Three images: the first product, the mix at ``mix`` (0: first, 1: second), the second product.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    za, zb = interpolation_ends(model, a, b)
    return decode(model, torch.cat([za, mix_code(za, zb, mix, spherical), zb]), label)


INPAINT_PRESETS = {"box (sliders)": "box", "centre box": "center", "random blocks": "blocks", "missing half": "half"}


def inpainting_mask(preset: str, rows: tuple[int, int], cols: tuple[int, int], seed: int = 0,
                    image: ImageSpec | None = None) -> Tensor:
    """The missing pixels (1 x C x H x W bool, ``image``'s size; default the catalogue's): the box ``rows`` x
    ``cols`` (``preset="box"``) or a preset mask of ``edit.MASKS``.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    image = image or data.spec()
    if preset != "box":
        return edit.missing_mask(preset, 1, seed, image=image)
    return edit.box_mask(rows[0], rows[1], cols[0], cols[1], image=image)


def render_inpainting(image_id: int, mask: Tensor, model: str = "vae") -> Tensor:
    """Three images: test product ``image_id``, its masked version (missing pixels grey) and the restoration by
    latent optimisation in ``model`` ("vae" or "dcgan").

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    x = data.to_float(data.load("test")[0][image_id : image_id + 1])
    y = x.masked_fill(mask, 0.0)
    restored = edit.inpaint(edit.prior(model), y, mask)
    return torch.cat([x, edit.shown_masked(y, mask), restored])


def render_similar(image: Tensor, k: int = 6, dataset: str = DEFAULT) -> tuple[Tensor, list[str]]:
    """The query (float C x H x W of ``dataset``'s spec) and its ``k`` nearest catalogue products (the best
    embedding available: the classifier's features on Fashion-MNIST; cosine): images and captions.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    spec = data.spec(dataset)
    x = search.photo_image(image, spec)[None]
    emb, index = search.catalogue_index(search.best_available(dataset=dataset), dataset=dataset)
    scores, ids = search.query(emb, index, x, k)
    found = data.to_float(search.catalogue(dataset)[0][ids[0]])
    captions = ["query"] + [f"#{i} {spec.class_names[int(index.labels[i])]} ({s:.2f})"
                            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)]
    return torch.cat([x, found]), captions


# ---------------------------------------------------------------- explorers


class Explorer:
    """An image that controls update. ``.widget`` is what a notebook displays; ``.current`` the rendered tensor;
    ``.seconds`` how long the last update took (render and PNG).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, title: str, controls: list[w.Widget], width: int) -> None:
        self.image = w.Image(format="png", width=width)
        self.status = w.HTML()
        self.current = torch.empty(0)
        self.seconds = 0.0
        self.widget = w.VBox([w.HTML(f"<b>{title}</b>"), *controls, self.image, self.status])

    def render(self) -> Tensor:
        raise NotImplementedError

    def update(self, change: object = None) -> None:
        start = time.perf_counter()
        self.current = self.render()
        self.image.value = png(self.current)
        self.seconds = time.perf_counter() - start

    def _observe(self, controls: list[w.Widget]) -> None:
        for c in controls:
            c.observe(self.update, names="value")


class LatentExplorer(Explorer):
    """Model picker, class (conditional GAN), seed, and one slider per latent direction (edit.PROPERTIES).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, model: str = "cdcgan", seed: int = 0, label: int = 0) -> None:
        self.model = w.Dropdown(options=list(MODELS.items()), value=model, description="model")
        self.label = w.Dropdown(options=_class_options(image_of("cdcgan")), value=label, description="class")
        self.seed = w.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=True)
        self.sliders = {prop: self._slider(prop) for prop in edit.PROPERTIES}
        self.extra: dict[str, Mapping[str, Tensor]] = {}  # added sliders: property -> model -> direction
        hints = ", ".join(f"{p}: {label}" for p, (_, label) in edit.PROPERTIES.items())
        directions()  # read (or computed once) here, not on the first slider move
        controls = [self.model, self.label, self.seed, *self.sliders.values()]
        super().__init__("Latent sliders", [*controls[:3], w.HTML(f"<small>{hints}</small>"), *controls[3:]],
                         width=image_of(model).width * SCALE)
        self._observe(controls)
        self.update()

    @staticmethod
    def _slider(prop: str) -> w.FloatSlider:
        return w.FloatSlider(value=0.0, min=-SLIDER_RANGE, max=SLIDER_RANGE, step=0.1, description=prop,
                             continuous_update=True)

    def add_slider(self, prop: str, directions: Mapping[str, Tensor]) -> w.FloatSlider:
        """A new slider along ``directions[model]`` (from ``edit.property_direction``), shown under the others;
        disabled for models without a direction (exercise 07.3).

        Chapter 07 (notebooks/07_explorer.ipynb).
        """
        self.extra[prop] = dict(directions)
        self.sliders[prop] = slider = self._slider(prop)
        children = list(self.widget.children)
        children.insert(children.index(self.image), slider)
        self.widget.children = tuple(children)
        self._observe([slider])
        self.update()
        return slider

    def render(self) -> Tensor:
        model = self.model.value
        self.label.disabled = model != "cdcgan"
        for prop, by_model in self.extra.items():
            self.sliders[prop].disabled = model not in by_model
        offsets = {prop: s.value for prop, s in self.sliders.items() if not s.disabled}
        extra = {prop: by_model[model] for prop, by_model in self.extra.items() if model in by_model}
        return render_latent(model, self.seed.value, offsets, self.label.value, extra)


class InterpolationExplorer(Explorer):
    """Two products (catalogue ids for the VAE, seeds for the GANs), the mix, and linear or spherical paths.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, model: str = "vae", a: int = 0, b: int = 1, label: int = 7) -> None:
        last = len(search.catalogue()[1]) - 1
        self.model = w.Dropdown(options=list(MODELS.items()), value=model, description="model")
        self.a = w.BoundedIntText(value=a, min=0, max=last, description="product A")
        self.b = w.BoundedIntText(value=b, min=0, max=last, description="product B")
        self.mix = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="mix", continuous_update=True)
        self.spherical = w.ToggleButtons(options=[("spherical", True), ("linear", False)], value=True,
                                         description="path")
        classes = _class_options(image_of("cdcgan"))
        self.label = w.Dropdown(options=classes, value=min(label, len(classes) - 1), description="class")
        controls = [self.model, self.a, self.b, self.label, self.spherical, self.mix]
        note = w.HTML("<small>VAE: A and B are catalogue ids (encoded); GANs: they are seeds. "
                      "Shown: A, the mix, B.</small>")
        super().__init__("Interpolation", [*controls, note], width=3 * image_of(model).width * SCALE)
        self._observe(controls)
        self.update()

    def render(self) -> Tensor:
        self.label.disabled = self.model.value != "cdcgan"
        return render_interpolation(self.model.value, self.a.value, self.b.value, self.mix.value,
                                    self.spherical.value, self.label.value)


class InpaintingExplorer(Explorer):
    """A test image, a mask (a box from two range sliders, or a preset) and the restoration, with a progress note
    (latent optimisation takes a fraction of a second, longer than a slider's decode).

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, image_id: int = 0, model: str = "vae") -> None:
        image = data.spec()
        last = len(data.load("test")[1]) - 1
        self.image_id = w.BoundedIntText(value=image_id, min=0, max=last, description="test image")
        self.preset = w.Dropdown(options=list(INPAINT_PRESETS.items()), value="box", description="mask")
        box = (image.height * 2 // 7, image.height * 5 // 7)  # the middle three sevenths (8-20 of 28 pixels)
        self.rows = w.IntRangeSlider(value=box, min=0, max=image.height, description="rows", continuous_update=False)
        self.cols = w.IntRangeSlider(value=box, min=0, max=image.width, description="columns",
                                     continuous_update=False)
        self.model = w.Dropdown(options=[("VAE", "vae"), ("GAN (dcgan)", "dcgan")], value=model, description="prior")
        controls = [self.image_id, self.preset, self.rows, self.cols, self.model]
        super().__init__("Inpainting: original, masked (grey), restored", controls, width=3 * image.width * SCALE)
        self._observe(controls)
        self.update()

    def render(self) -> Tensor:
        self.status.value = "<i>restoring…</i>"
        self.rows.disabled = self.cols.disabled = self.preset.value != "box"
        mask = inpainting_mask(self.preset.value, self.rows.value, self.cols.value, image=data.spec())
        out = render_inpainting(self.image_id.value, mask, self.model.value)
        self.status.value = f"missing pixels: {int(mask.sum())}"
        return out

    def update(self, change: object = None) -> None:
        super().update(change)
        self.status.value += f"; restored in {self.seconds * 1000:.0f} ms"


class SimilarExplorer(Explorer):
    """"What in the catalogue looks like this?": the product the latent sliders show, or a test image.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, source: LatentExplorer | None = None, k: int = 6) -> None:
        self.source = source
        options = ([("the latent sliders' product", "source")] if source is not None else []) + [("test image", "test")]
        self.query = w.Dropdown(options=options, value=options[0][1], description="query")
        self.image_id = w.BoundedIntText(value=0, min=0, max=len(data.load("test")[1]) - 1, description="test image")
        self.k = w.IntSlider(value=k, min=1, max=10, description="results")
        self.button = w.Button(description="find similar", icon="search")
        self.caption = w.HTML()
        controls = [self.query, self.image_id, self.k]
        embedding = search.EMBEDDINGS[search.best_available()].title
        products = len(search.catalogue()[1])
        super().__init__(f"Find similar products ({embedding}, {products:,} products)",
                         [*controls, self.button], width=(k + 1) * data.spec().width * SCALE // 2)
        self.widget.children = (*self.widget.children, self.caption)
        self._observe(controls)
        self.button.on_click(lambda _: self.update())
        self.update()

    def query_image(self) -> Tensor:
        if self.query.value == "source" and self.source is not None:
            return self.source.current[0]
        i = self.image_id.value
        return data.to_float(data.load("test")[0][i : i + 1])[0]

    def render(self) -> Tensor:
        images, captions = render_similar(self.query_image(), self.k.value)
        self.caption.value = "<small>" + " | ".join(captions) + "</small>"
        self.image.width = len(images) * images.shape[-1] * SCALE // 2
        return images
