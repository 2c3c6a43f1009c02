"""Shipped weights: checkpoints of the workbook's models, saved and loaded by name, rebuilt from their JSON alone.

A checkpoint is two files in a folder (``config.CHECKPOINT_DIR`` for the shipped ones, a run folder otherwise;
CONTRIBUTING.md, "Shipped weights"):

* ``NAME.safetensors``: the model's tensors only. Loading never unpickles anything, so a checkpoint cannot run
  code on the reader's machine.
* ``NAME.json``: what is needed to trust and re-create it: the model name and its family (``kind``), the config
  dataclass with the image spec the model reads and draws, the data set it was trained on, the recipe, the exact
  command line, the seed, the SHA-256 of the training data, the training time, the machine, the measured metrics
  and the SHA-256 of the weights file (checked on load, so a damaged file is caught).

The family names the network's class and its config class (``prodlab.models.FAMILIES``), so :func:`load` needs
no table of models: the JSON says what to build. Generative models expose ``sample(n, generator, labels=None)``
returning float images N x C x H x W in [0, 1]; :func:`generate` turns that into the uint8 N x H x W x C arrays
that ``sample`` writes and ``evaluate`` measures. The named models and how each is trained are the registry's
(``prodlab.training.registry``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from prodlab import config, data, datasets, files, models, provenance, recipes
from prodlab.datasets import fashion_mnist

FORMAT_VERSION = 3  # 3: the image spec in the config, the data set; 2: the recipe, the command, the code version


class ModelError(ValueError):
    """An unknown model name, or a model asked to do what it cannot (e.g. sample from the classifier)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or belongs to another model; the message says what to do."""


def paths(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` in ``directory`` (default ``config.CHECKPOINT_DIR``)."""
    folder = Path(directory) if directory is not None else config.CHECKPOINT_DIR
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def exists(name: str, directory: Path | None = None) -> bool:
    return all(p.is_file() for p in paths(name, directory))


def machine() -> dict[str, Any]:
    """Where a model was trained (recorded next to its training time)."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }




def save(
    name: str,
    model: nn.Module,
    *,
    dataset: str,
    recipe: dict[str, Any] | None,
    command: str,
    seed: int,
    train_seconds: float,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    directory: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` and ``NAME.json`` for ``model``, trained on ``dataset``.

    ``recipe`` is the training recipe as JSON (``recipes.recipe_to_json``), ``command`` the exact command line.
    Both files are written to temporary files first and then renamed, so an interruption leaves the old pair.
    """
    weights, meta_path = paths(name, directory)
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with files.atomic_path(weights) as tmp_weights, files.atomic_path(meta_path) as tmp_meta:
        files.write_tensors(tmp_weights, tensors, metadata={"model": name, "format": str(FORMAT_VERSION)})
        tmp_weights.chmod(0o644)
        meta = {
            "model": name,
            "kind": models.kind_of(model),
            "format": FORMAT_VERSION,
            "dataset": dataset,
            "image_spec": model.cfg.image.to_json(),
            "config": dataclasses.asdict(model.cfg),
            "recipe": recipe,
            "command": command,
            "seed": seed,
            "quick_mode": config.quick(),
            "training_data_sha256": datasets.fingerprint(dataset),
            "train_seconds": round(train_seconds, 1),
            "machine": machine(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "metrics": metrics,
            "weights_sha256": files.sha256(tmp_weights),
            **(extra or {}),
        }
        files.write_json(tmp_meta, meta)
    return weights, meta_path


# Format 2 predates image specs: every format-2 checkpoint was trained on Fashion-MNIST, and its config named the
# class count (``n_classes``) where format 3 says ``conditional`` and takes the classes from the image spec.
_UNET_RENAMES = {"down28": "down1", "pool28": "pool1", "down14": "down2", "pool14": "pool2", "up7": "up_mid",
                 "up14_up": "up2_up", "up14": "up2", "up28": "up1"}


def conditional_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A GAN's or diffusion model's recorded config fields without the image, format 2's class count read as format
    3's ``conditional`` (fields already of format 3 keep theirs)."""
    own = {k: v for k, v in fields.items() if k not in ("image", "n_classes")}
    own.setdefault("conditional", fields.get("n_classes", 0) > 0)
    return own


def _upgrade(meta: dict[str, Any]) -> dict[str, Any]:
    """A format-2 checkpoint description read as format 3 (in memory; the file is left as it is)."""
    if meta.get("format") != 2:
        return meta
    image = fashion_mnist.SPEC.to_json()
    cfg = {**meta.get("config", {})}
    if meta.get("kind") in ("gan", "diffusion"):
        cfg = conditional_fields(cfg)
    cfg.pop("n_classes", None)
    if meta.get("kind") == "latent-diffusion":
        cfg["first_stage"] = {"image": image, "latent_dim": cfg.pop("latent_dim")}
    else:
        cfg["image"] = image
    return {**meta, "format": FORMAT_VERSION, "upgraded_from_format": 2, "dataset": fashion_mnist.NAME,
            "image_spec": image, "config": cfg}


def _rename(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tensor names of a format-2 U-Net (its levels named by their 28, 14 and 7 pixels) in format 3."""
    if meta.get("upgraded_from_format") != 2 or meta.get("kind") != "diffusion":
        return tensors
    pattern = re.compile(r"\.(" + "|".join(_UNET_RENAMES) + r")\.")
    return {pattern.sub(lambda m: f".{_UNET_RENAMES[m[1]]}.", k): v for k, v in tensors.items()}


def read_meta(name: str, directory: Path | None = None, kind: str | None = None) -> dict[str, Any]:
    """The JSON of checkpoint ``name`` (format 2 read as format 3), checked to be that model's (and of family
    ``kind`` when given)."""
    weights, meta_path = paths(name, directory)
    remedy = f"Re-create it with: python -m prodlab train {name}"
    missing = [p for p in (weights, meta_path) if not p.is_file()]
    if missing:
        raise CheckpointError(f"no checkpoint for {name!r}: missing {', '.join(map(str, missing))}. {remedy}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"corrupt checkpoint description {meta_path}: {err}. {remedy}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint description {meta_path}: not a JSON object. {remedy}")
    meta = _upgrade(meta)
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} has format {meta.get('format')!r}; this prodlab reads formats 2 and "
                              f"{FORMAT_VERSION}. {remedy}")
    if meta.get("model") != name or meta.get("kind") not in models.FAMILIES or kind not in (None, meta["kind"]):
        raise CheckpointError(
            f"{meta_path} holds a {meta.get('model')!r} checkpoint (kind {meta.get('kind')!r}), not {name!r}"
            + (f" (kind {kind!r})" if kind else "")
            + f". Use the right name, or re-create it with: python -m prodlab train {name}"
        )
    return meta


def weights_sha256(name: str, directory: Path | None = None) -> str:
    """The SHA-256 of checkpoint ``name``'s weights, as its JSON records it (else computed from the file): the key
    of everything cached from those weights (reference features, search indexes, cached analyses)."""
    return read_meta(name, directory).get("weights_sha256") or files.sha256(paths(name, directory)[0])


def load(name: str, directory: Path | None = None, kind: str | None = None) -> nn.Module:
    """Build model ``name`` from its checkpoint's config, load its tensors, return it in eval mode.

    Raises ``CheckpointError`` (never a bare traceback) for a missing file, a checkpoint of another model or of
    another family than ``kind``, a weights file that does not match its SHA-256, cannot be read, or whose tensor
    names or shapes differ from the model's.
    """
    meta = read_meta(name, directory, kind)
    weights, meta_path = paths(name, directory)
    remedy = f"Re-create it with: python -m prodlab train {name}"
    recorded = meta.get("weights_sha256")
    if recorded is not None and files.sha256(weights) != recorded:
        raise CheckpointError(f"corrupt checkpoint {weights}: its SHA-256 differs from the one in {meta_path.name}. "
                              f"{remedy}")
    try:
        tensors = _rename(load_file(str(weights)), meta)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt checkpoint {weights}: {err}. {remedy}") from err
    build, config_cls = models.FAMILIES[meta["kind"]]
    try:
        model = build(recipes.from_json(config_cls, meta.get("config", {})))
    except recipes.RecipeError as err:
        raise CheckpointError(f"{meta_path}: its config does not build a {meta['kind']} ({err}); the checkpoint "
                              f"was written by another version of prodlab. {remedy}") from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise CheckpointError(
            f"{weights} does not fit model {name!r}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {[(k, found[k], expected[k]) for k in shapes[:5]]}. {remedy}"
        )
    model.load_state_dict(tensors)
    provenance.record(name, weights, recorded)  # which weights a notebook read: tests/test_freshness.py
    return model.eval()


def names(directory: Path | None = None) -> list[str]:
    """Every checkpoint in ``directory`` (default: the shipped ones) whose description names it, sorted."""
    folder = Path(directory) if directory is not None else config.CHECKPOINT_DIR
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").is_file())


def balanced_labels(n: int, n_classes: int) -> torch.Tensor:
    """0, 1, ..., n_classes - 1, 0, 1, ... : ``n`` labels with every class as often as possible (int64)."""
    return torch.arange(n, dtype=torch.int64) % n_classes


def condition_sizes(model: nn.Module) -> tuple[int, ...]:
    """What a generative model's ``sample`` is conditioned on, as value counts per label column: () unconditional,
    the class count, then (a GAN on a spec with attributes) each attribute's (``GANConfig.condition_sizes``)."""
    if not models.is_conditional(model):
        return ()
    return getattr(model.cfg, "condition_sizes", (model.cfg.n_classes,))


def balanced_conditions(n: int, sizes: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """``n`` requests for a model conditioned on ``sizes`` (:func:`condition_sizes`): the balanced classes of
    :func:`balanced_labels` (int64 N) when there is one condition; else N x len(sizes), each further column balanced
    too and shuffled by ``seed`` (its own generator), so the combinations vary and no column follows another."""
    classes = balanced_labels(n, sizes[0])
    if len(sizes) == 1:
        return classes
    shuffle = torch.Generator().manual_seed(seed)
    return torch.stack([classes, *(balanced_labels(n, k)[torch.randperm(n, generator=shuffle)] for k in sizes[1:])], 1)


def requests(model: nn.Module, n: int, seed: int = 0) -> torch.Tensor | None:
    """What ``n`` samples of ``model`` are asked for when it is measured: :func:`balanced_conditions` of its
    :func:`condition_sizes`; None for an unconditional model."""
    sizes = condition_sizes(model)
    return balanced_conditions(n, sizes, seed) if sizes else None


@torch.no_grad()
def generate(
    name: str, n: int, seed: int = 0, directory: Path | None = None, batch_size: int = 1000,
    model: nn.Module | None = None, device: torch.device | None = None, labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples of generative model ``name``: uint8 images N x H x W x C and, for a class-conditional model,
    their requested classes (int64 N); ``None`` otherwise. On ``device`` (default the CPU), in batches.

    ``labels``: what to ask for, one row per image (default :func:`balanced_conditions`); a GAN conditioned on
    attributes takes N x (1 + K), the class then each attribute, and the classes (column 0) come back.

    Deterministic for a given seed: the model draws its noise from one CPU ``torch.Generator`` seeded with
    ``seed``. A request whose images would not fit in memory is refused at once (``files.check_memory``).
    """
    if n < 1:
        raise ModelError(f"the number of samples must be at least 1, not {n}")
    model = model if model is not None else load(name, directory)
    if not models.is_generative(model):
        raise ModelError(f"{name} is not a generative model (a {models.kind_of(model)}): it cannot sample")
    files.check_memory(n * model.cfg.image.num_pixels, f"{n:,} images of {name}")
    model.eval().to(device or "cpu")
    generator = torch.Generator().manual_seed(seed)
    labels = requests(model, n, seed) if labels is None else labels
    chunks = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = model.sample(stop - start, generator, labels=None if labels is None else labels[start:stop])
        chunks.append(data.to_uint8(x.cpu()))
    model.cpu()
    return torch.cat(chunks), labels if labels is None or labels.ndim == 1 else labels[:, 0]
