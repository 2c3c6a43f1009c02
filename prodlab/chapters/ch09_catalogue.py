"""Your catalogue (chapter 09, §3.3, the whole pipeline on a shop's own photos): the helpers and figures of
notebooks/09_catalogue.ipynb.

The notebook runs on any folder of product photos (its papermill parameters ``data_dir``, ``size`` and ``quick``;
``python -m prodlab report DIR``) or, with none, on the shipped colour catalogue. Each step is one call here, on the
catalogue's name: import and look, the three models (a ruler, a conditional GAN, a VAE: the shipped ones where the
catalogue has them, else trained now), samples per class, the ruler's measures, an inpainting and a recolouring, and
a search with a photo.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from prodlab import cache, catalogue_explorer, checkpoints, config, data, degrade, plotting, ruler
from prodlab.chapters import ch08_diffusion
from prodlab.chapters.ch00_products import class_balance
from prodlab.datasets import colour, folder
from prodlab.edit import recolour, restore
from prodlab.search import evaluate as search_evaluate
from prodlab.search import index as search_index
from prodlab.training import registry

MODELS = {"classifier": "the ruler: a classifier with a head per attribute",
          "cdcgan": "a GAN conditioned on the class (and on every attribute the catalogue stores)",
          "vae": "a VAE: inpainting, recolouring by latent directions, the explorer"}
FAMILY_ROWS = ("cdcgan", "diffusion", "vae")  # the generative models of the family table, where trained
IMAGES_SEEN = (60_000, 4_096)  # full, quick: the most images a model trained here sees (recipe_for)


def catalogue_name(data_dir: str | Path | None) -> str:
    """The catalogue a folder becomes (its name in lower case, runs of other characters as one ``-``); with no
    folder, the shipped colour catalogue's. Chapter 09 (notebooks/09_catalogue.ipynb)."""
    if data_dir is None:
        return colour.NAME
    name = re.sub(r"[^a-z0-9_]+", "-", Path(data_dir).resolve().name.lower()).strip("-_")
    return name or "my-catalogue"


def open_catalogue(data_dir: str | Path | None, size: int) -> tuple[str, list[str]]:
    """Import the folder ``data_dir`` as ``size`` x ``size`` RGB images (or build the colour catalogue when there is
    none): the catalogue's name and the import's report, one line per fact (every skipped file with its reason).
    Chapter 09 (notebooks/09_catalogue.ipynb)."""
    if data_dir is None:
        built = colour.build()
        verb = "built" if built.built else "verified"
        return colour.NAME, [f"{colour.NAME}: {verb} in {built.seconds:.1f} s, {built.spec.describe()}, "
                             + ", ".join(f"{n:,} {split}" for split, n in built.counts.items())]
    name = catalogue_name(data_dir)
    report = folder.import_folder(Path(data_dir), name, size=size)
    return name, report.lines()


def model_source(kind: str, name: str) -> str | None:
    """Where model ``kind`` (:data:`MODELS`) of catalogue ``name`` comes from: its checkpoint's name and folder, or
    None when none has been trained."""
    try:
        if kind == "classifier":
            found = ruler.find(name)
            return None if found is None else f"{found[0]} in {found[1]}"
        checkpoint, where = restore.trained(kind, name)
    except checkpoints.CheckpointError:
        return None
    return f"{checkpoint} in {where}"


def recipe_for(kind: str, n_train: int) -> Any:
    """The registry's recipe for ``kind`` (the quick one in quick mode) with its epochs raised so that a catalogue
    of ``n_train`` training images gives as many images to learn from as the recipe does on a large one
    (``train_limit`` x ``epochs``, at most :data:`IMAGES_SEEN`): one epoch of a few hundred photos is a handful of
    steps, too few to learn anything. Chapter 09 (notebooks/09_catalogue.ipynb)."""
    recipe = registry.default_recipe(kind)
    per_epoch = min(n_train, recipe.train_limit or n_train)
    seen = min((recipe.train_limit or math.inf) * recipe.epochs, config.budget(*IMAGES_SEEN))
    return dataclasses.replace(recipe, epochs=max(recipe.epochs, math.ceil(seen / per_epoch)))


def ensure_models(name: str) -> dict[str, str]:
    """Each of :data:`MODELS` for catalogue ``name``: the one found (shipped or trained before), else trained now
    with :func:`recipe_for`, as ``python -m prodlab train KIND --data NAME --set epochs=E`` would. Returns where
    each came from. Chapter 09 (notebooks/09_catalogue.ipynb)."""
    n_train = len(data.load("train", dataset=name)[1])
    said = {}
    for kind in MODELS:
        found = model_source(kind, name)
        if found is None:
            start = time.perf_counter()
            recipe = recipe_for(kind, n_train)
            command = f"python -m prodlab train {kind} --data {name} --set epochs={recipe.epochs}"
            registry.train_and_save(kind, recipe, dataset=name, progress=False, command=command)
            found = f"{model_source(kind, name)}, trained now ({command}, {time.perf_counter() - start:.0f} s)"
        said[kind] = found
    return said


def balance(name: str) -> Figure:
    """Images per class in each split of catalogue ``name``."""
    spec = data.spec(name)
    counts = {split: torch.bincount(data.load(split, dataset=name)[1], minlength=spec.n_classes).tolist()
              for split in ("train", "test")}
    return class_balance(counts, spec.class_names)


def class_means(name: str) -> Figure:
    """The mean training image of each class of catalogue ``name``."""
    spec = data.spec(name)
    images, labels = data.load("train", dataset=name)
    means = data.class_means(images, labels, spec.n_classes)
    return plotting.image_grid(means, ncols=min(spec.n_classes, 10), titles=list(spec.class_names), cell=1.0)


def requests(sizes: tuple[int, ...], per_class: int, seed: int = 0) -> torch.Tensor:
    """What to ask a GAN conditioned on ``sizes`` (``GANConfig.condition_sizes``) for: ``per_class`` products of
    each class, class by class, each with attributes drawn from ``seed`` (N, or N x (1 + K) with attributes)."""
    asked = checkpoints.balanced_conditions(per_class * sizes[0], sizes, seed)
    order = torch.argsort(asked if asked.ndim == 1 else asked[:, 0], stable=True)
    return asked[order]


def samples(name: str, per_class: int = 8, seed: int = 0, model: str = "cdcgan") -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of each class from the catalogue's conditional generator ``model``
    (``catalogue_explorer.GENERATORS``; float N x C x H x W) and what was asked."""
    generator = restore.load_trained(model, name, kind=catalogue_explorer.GENERATORS[model][1])
    asked = requests(generator.cfg.condition_sizes, per_class, seed)
    return generator.sample(len(asked), torch.Generator().manual_seed(seed), labels=asked), asked


def samples_figure(name: str, per_class: int = 8, seed: int = 0, model: str = "cdcgan") -> Figure:
    """The samples of :func:`samples`, one row per class."""
    images, _ = samples(name, per_class, seed, model)
    return plotting.labelled_rows(list(images.split(per_class)), list(data.spec(name).class_names), cell=0.8)


def family_table(name: str) -> dict[str, dict[str, Any]]:
    """The recorded measures of each generative model of catalogue ``name`` (:data:`FAMILY_ROWS`, where one is
    trained; keyed by kind), all on that catalogue's ruler: samples measured, FID, precision, recall, the fidelity of
    each condition asked for, CPU milliseconds per sample and CPU minutes of training steps. Read from the
    checkpoints' JSON, where ``python -m prodlab train`` wrote them."""
    rows = {}
    for kind in FAMILY_ROWS:
        try:
            checkpoint, where = restore.trained(kind, name)
        except checkpoints.CheckpointError:
            continue
        meta = checkpoints.read_meta(checkpoint, where)
        found = meta["metrics"]
        rows[kind] = {**{k: found.get(k) for k in ("n", "fid", "precision", "recall", "class_fidelity")},
                      **{k.removeprefix("attribute_fidelity_"): v for k, v in found.items()
                         if k.startswith("attribute_fidelity_")},
                      "sample_ms": found.get("sample_cpu_ms_per_image"),
                      "train_cpu_min": round(ch08_diffusion.train_cpu_seconds(meta) / 60, 1)}
    return rows


def measure(name: str, n: int, seed: int = 0) -> dict[str, Any]:
    """The ruler's measures of the conditional GAN on ``n`` samples (the test split's size at most), asked for
    balanced classes and attributes: FID, KID, precision, recall (``ruler.generator_report``) and the fidelity of
    each condition (``ruler.attribute_fidelity``: the share of samples the ruler reads as asked)."""
    n = min(n, len(data.load("test", dataset=name)[1]))
    r = ruler.load(dataset=name)
    checkpoint, where = restore.trained("cdcgan", name)
    gan = restore.load_trained("cdcgan", name, kind="gan")
    asked = checkpoints.balanced_conditions(n, gan.cfg.condition_sizes, seed)
    images, _ = checkpoints.generate(checkpoint, n, seed, where, model=gan, labels=asked)
    classes, attributes = (asked, None) if asked.ndim == 1 else (asked[:, 0], asked[:, 1:])
    report = ruler.generator_report(images, classes, r, seed=seed)
    fidelity = ruler.attribute_fidelity(r, images, classes, attributes)
    return {**{key: report[key] for key in ("n", "fid", "kid", "precision", "recall")}, "fidelity": fidelity}


def inpainting(name: str, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` test products with their centre hidden and filled by latent optimisation under the VAE
    (chapter 05): originals, the masked inputs shown grey, and the fills."""
    x = data.to_float(data.load("test", dataset=name)[0][:n])
    missing = degrade.missing_mask("center", n, image=data.spec(name))
    vae = restore.load_trained("vae", name, kind="vae")
    filled = restore.inpaint(restore.vae_prior(vae, restore.inversion("vae")), x.masked_fill(missing, 0.0), missing,
                             dataset=name)
    return x, x.masked_fill(missing, 0.5), filled


def recolouring(name: str, target: str, n: int = 8) -> dict[str, torch.Tensor]:
    """The first ``n`` test products recoloured to ``target`` by each method of ``prodlab.edit.recolour``."""
    x = data.to_float(data.load("test", dataset=name)[0][:n])
    value = data.spec(name).values("colour").index(target)
    return {"photo": x, **{f"{method}: {target}": recolour.edit(x, "colour", value, method, name)
                           for method in recolour.METHODS}}


@cache.computation("recolour", "recolouring and re-patterning test products of the colour catalogue by each "
                   "method, measured by its ruler and against the re-rendered truth (notebook 09)", dataset=colour.NAME)
def recolour_results() -> dict[str, Any]:
    """``recolour.evaluate`` for the colour and for the pattern, on its 500 held-out test products (quick mode: the
    first 30 of them)."""
    first = recolour.EVAL_PRODUCTS.start
    products = slice(first, first + config.budget(recolour.EVAL_PRODUCTS.stop - first, 30))
    return {attribute: recolour.evaluate(products, attribute) for attribute in recolour.ATTRIBUTES}


def search_precision(name: str, embedding: str, n_queries: int, k: int = 10) -> dict[str, float]:
    """Precision@k of the first ``n_queries`` test products searching the training catalogue with ``embedding``:
    relevant = same class, and (with a colour attribute) same class and colour; each with its 95 % interval's
    half-width over queries (1.96 standard errors)."""
    emb, index = search_index.catalogue_index(embedding, dataset=name)
    images, labels = search_evaluate.query_set(n_queries, name)
    _, ids = search_index.query(emb, index, images, k)
    hits = {"class": search_evaluate.relevance(index, ids, labels)[0]}
    if "colour" in data.spec(name).attribute_names:
        train_colour, test_colour = (recolour.attribute_values("colour", name, split) for split in ("train", "test"))
        hits["class + colour"] = hits["class"] & (train_colour[ids] == test_colour[:n_queries, None])
    out = {}
    for what, relevant in hits.items():
        per_query = search_evaluate.precision_at_k(relevant, k)
        out[what] = per_query.mean().item()
        out[f"{what} ±"] = 1.96 * per_query.std().item() / len(per_query) ** 0.5
    return out

