"""Explorers for any catalogue (notebook 07, section 5, and notebook 09): ask a catalogue's conditional generator
for a class (and, where the catalogue stores them, a colour and a pattern), then find the catalogue's products
nearest to what it drew.

The explorers of ``prodlab.widgets`` are built on the shipped Fashion-MNIST models and their measured latent
directions. These two read only what every catalogue has: its image spec (classes and attributes), the conditional
generators trained on it (``python -m prodlab train cdcgan --data NAME``, ``... train diffusion --data NAME``; the
colour catalogue ships both) and its search index. So they point at the shipped colour catalogue, at a folder
imported with ``python -m prodlab data import``, or at any other catalogue by name (``make app CATALOGUE=NAME``).
As in ``prodlab.widgets``, a control's callback is one call to a pure ``render_*`` function.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import ipywidgets as w
import torch
from torch import Tensor

from prodlab import checkpoints, data, widgets
from prodlab.datasets import colour
from prodlab.edit import restore

CATALOGUE_ENV = "PRODLAB_CATALOGUE"  # the catalogue notebook 07's last explorers show (make app CATALOGUE=NAME)
GENERATORS = {"cdcgan": ("conditional GAN", "gan"), "diffusion": ("conditional diffusion", "diffusion")}  # title, kind


def chosen_catalogue() -> str:
    """The catalogue named by ``PRODLAB_CATALOGUE``, else the shipped colour catalogue.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    return os.environ.get(CATALOGUE_ENV) or colour.NAME


def generators(name: str) -> list[tuple[str, str]]:
    """The conditional generators trained on catalogue ``name`` (shipped, or a run under ``runs/NAME/``) as
    ``(title, model)`` options; empty when none is.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    found = []
    for model, (title, _) in GENERATORS.items():
        try:
            restore.trained(model, name)
        except checkpoints.CheckpointError:
            continue
        found.append((title, model))
    return found


@functools.cache
def generator(name: str, model: str) -> torch.nn.Module:
    """Generator ``model`` (:data:`GENERATORS`) of catalogue ``name``, loaded once per process, eval mode.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    return restore.load_trained(model, name, kind=GENERATORS[model][1])


def conditions_of(name: str) -> dict[str, tuple[str, ...]]:
    """What a request to catalogue ``name`` names: ``class`` and each stored attribute, with their values.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    spec = data.spec(name)
    return {"class": spec.class_names, **dict(spec.attributes)}


def render_conditioned(name: str, model: str, asked: Mapping[str, int], seed: int, n: int = 6) -> Tensor:
    """``n`` products (float N x C x H x W in [0, 1]) that ``model`` of catalogue ``name`` draws when asked for the
    values ``asked`` (a value index per condition the model reads: ``class``, then each attribute); the same seed
    always draws the same products.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """
    g = generator(name, model)
    row = [int(asked[c]) for c in g.cfg.condition_names]
    labels = torch.tensor([row] * n) if g.cfg.on_attributes else torch.full((n,), row[0])
    return g.sample(n, torch.Generator().manual_seed(int(seed)), labels=labels)


class ConditionExplorer(widgets.Explorer):
    """Model picker (the catalogue's conditional generators), one dropdown per condition, and a seed: ``n``
    products drawn as asked.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, name: str, seed: int = 0, n: int = 6) -> None:
        options = generators(name)
        if not options:
            raise checkpoints.CheckpointError(f"no conditional generator is trained on catalogue {name!r}; train "
                                              f"one with: python -m prodlab train cdcgan --data {name}")
        self.name, self.n = name, n
        self.model = w.Dropdown(options=options, value=options[0][1], description="model")
        self.choices = {c: w.Dropdown(options=[(v, i) for i, v in enumerate(values)], value=0, description=c)
                        for c, values in conditions_of(name).items()}
        self.seed = w.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=False)
        controls = [self.model, *self.choices.values(), self.seed]
        super().__init__(f"Ask catalogue {name!r}", controls, width=n * data.spec(name).width * widgets.SCALE // 2)
        self._observe(controls)
        self.update()

    def render(self) -> Tensor:
        asked = {c: d.value for c, d in self.choices.items()}
        return render_conditioned(self.name, self.model.value, asked, self.seed.value, self.n)


class CatalogueSimilar(widgets.Explorer):
    """The catalogue's products nearest to the first product a :class:`ConditionExplorer` shows (its search
    index, ``widgets.render_similar``), updated whenever that explorer changes.

    Chapter 07 (notebooks/07_explorer.ipynb).
    """

    def __init__(self, source: ConditionExplorer, k: int = 6) -> None:
        self.source, self.k = source, k
        self.caption = w.HTML()
        super().__init__(f"Nearest products of {source.name!r} to the first one drawn", [],
                         width=(k + 1) * data.spec(source.name).width * widgets.SCALE // 2)
        self.widget.children = (*self.widget.children, self.caption)
        source.image.observe(self.update, names="value")
        self.update()

    def render(self) -> Tensor:
        images, captions = widgets.render_similar(self.source.current[0], self.k, dataset=self.source.name)
        self.caption.value = "<small>" + " | ".join(captions) + "</small>"
        return images
