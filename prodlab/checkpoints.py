"""Shipped weights: a registry of the workbook's models and their checkpoints, saved and loaded by name.

A checkpoint is two files in ``config.CHECKPOINT_DIR`` (CONTRIBUTING.md, "Shipped weights"):

* ``NAME.safetensors``: the model's tensors only. Loading never unpickles anything, so a checkpoint cannot run
  code on the reader's machine.
* ``NAME.json``: what is needed to trust and re-create it: the model name and kind, the config dataclass fields,
  the exact command line, the seed, the SHA-256 of the training data, the training time, the machine, the
  measured metrics and the SHA-256 of the weights file (checked on load, so a damaged file is caught).

The registry maps a model name to how to build it (a function of a frozen config dataclass) and what it can do.
Generative models expose ``sample(n, generator, labels=None)`` returning float
images N x 1 x 28 x 28 in [0, 1]; :func:`generate` turns that into the uint8 arrays that ``sample`` writes and
``evaluate`` measures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from prodlab import config, data, files, provenance
from prodlab.models.classifier import ClassifierConfig, ProductClassifier
from prodlab.models.gan import GAN, GANConfig
from prodlab.models.unet import DiffusionConfig, DiffusionModel, LatentDiffusion, LatentDiffusionConfig
from prodlab.models.vae import ConvVAE, VAEConfig

FORMAT_VERSION = 2  # 2: the recipe saved whole (``recipe``), the command line (``command``), ``code_version``


class ModelError(ValueError):
    """An unknown model name, or a model asked to do what it cannot (e.g. sample from the classifier)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or belongs to another model; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its name, kind, default config and how to build it from a config."""

    name: str
    kind: str  # "classifier", "gan" or "vae"
    build: Callable[[Any], nn.Module]
    config: Any  # the default config (a frozen dataclass instance)
    generative: bool = False  # the model has ``sample(n, generator, labels=None)``
    conditional: bool = False  # ``sample`` takes class labels
    description: str = ""


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (the workbook's models below; tests add toy ones)."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


register_model(ModelSpec("classifier", "classifier", ProductClassifier, ClassifierConfig(),
                         description="small CNN product classifier; the feature space of the metrics"))
register_model(ModelSpec("dcgan", "gan", GAN, GANConfig(), generative=True,
                         description="DCGAN for 28x28 products, the article's recipe (§2.2, §3.1)"))
register_model(ModelSpec("cdcgan", "gan", GAN, GANConfig(n_classes=10), generative=True, conditional=True,
                         description="class-conditional DCGAN: ask for 'a sneaker' (§2.2, §3.1, §4.1)"))
register_model(ModelSpec("vae", "vae", ConvVAE, VAEConfig(latent_dim=16), generative=True,
                         description="convolutional VAE, 16-d latent, Bernoulli likelihood (§2.3, §3.2)"))
register_model(ModelSpec("vae-sharp", "vae", ConvVAE, VAEConfig(latent_dim=16), generative=True,
                         description="the vae trained with beta = 0.25: latent-diffusion's first stage (ch. 08)"))
register_model(ModelSpec("vae2d", "vae", ConvVAE, VAEConfig(latent_dim=2), generative=True,
                         description="convolutional VAE with a 2-d latent, for the latent manifold (§3.2)"))
register_model(ModelSpec("diffusion", "diffusion", DiffusionModel, DiffusionConfig(), generative=True,
                         conditional=True, description="class-conditional flow-matching U-Net with guidance (ch. 08)"))
register_model(ModelSpec("diffusion-short", "diffusion", DiffusionModel, DiffusionConfig(), generative=True,
                         conditional=True, description="the diffusion recipe cut to the GANs' CPU budget (ch. 08)"))
register_model(ModelSpec("latent-diffusion", "latent-diffusion", LatentDiffusion, LatentDiffusionConfig(),
                         generative=True, description="flow prior on vae-sharp's 16-d codes + its decoder (ch. 08)"))


def spec(name: str) -> ModelSpec:
    """The registered model ``name``; ``ModelError`` listing the known names otherwise."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def generative_models() -> list[str]:
    return [name for name, s in MODELS.items() if s.generative]


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


def training_data_sha256() -> dict[str, str]:
    """SHA-256 of the decompressed training files (verified by ``prodlab.data`` when it stages them)."""
    return {name: digest for name, digest in data.SHA256.items() if name.startswith("train-")}


def save(
    name: str,
    model: nn.Module,
    *,
    recipe: dict[str, Any] | None,
    command: str,
    seed: int,
    train_seconds: float,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    directory: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` and ``NAME.json`` for a model built from the registry's ``name``.

    ``recipe`` is the training recipe as JSON (``recipes.recipe_to_json``), ``command`` the exact command line.
    Both files are written to temporary files first and then renamed, so an interruption leaves the old pair.
    """
    s = spec(name)
    weights, meta_path = paths(name, directory)
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with files.atomic_path(weights) as tmp_weights, files.atomic_path(meta_path) as tmp_meta:
        files.write_tensors(tmp_weights, tensors, metadata={"model": name, "format": str(FORMAT_VERSION)})
        tmp_weights.chmod(0o644)
        meta = {
            "model": name,
            "kind": s.kind,
            "format": FORMAT_VERSION,
            "config": dataclasses.asdict(getattr(model, "cfg", s.config)),
            "recipe": recipe,
            "command": command,
            "seed": seed,
            "quick_mode": config.quick(),
            "training_data_sha256": training_data_sha256(),
            "train_seconds": round(train_seconds, 1),
            "machine": machine(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "metrics": metrics,
            "weights_sha256": data.sha256(tmp_weights),
            **(extra or {}),
        }
        files.write_json(tmp_meta, meta)
    return weights, meta_path


def _config_from(cls: type, fields: Any, where: Path) -> Any:
    """Rebuild a config dataclass from its JSON fields (JSON lists become the tuples they were)."""
    if not isinstance(fields, dict):
        raise CheckpointError(f"{where}: 'config' is not an object. Re-create it with: python -m prodlab train")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise CheckpointError(f"{where}: config fields {unknown} do not belong to {cls.__name__}; "
                              "the checkpoint was written by another version of prodlab.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return cls(**values)


def read_meta(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON of checkpoint ``name``, checked to belong to that model."""
    s = spec(name)
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
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} has format {meta.get('format')!r}; this prodlab reads format "
                              f"{FORMAT_VERSION}. {remedy}")
    if meta.get("model") != name or meta.get("kind") != s.kind:
        raise CheckpointError(
            f"{meta_path} holds a {meta.get('model')!r} checkpoint (kind {meta.get('kind')!r}), not {name!r} "
            f"(kind {s.kind!r}). Use the right name, or re-create it with: python -m prodlab train {name}"
        )
    return meta


def weights_sha256(name: str, directory: Path | None = None) -> str:
    """The SHA-256 of checkpoint ``name``'s weights, as its JSON records it (else computed from the file): the key
    of everything cached from those weights (reference features, search indexes, cached analyses)."""
    return read_meta(name, directory).get("weights_sha256") or data.sha256(paths(name, directory)[0])


def load(name: str, directory: Path | None = None) -> nn.Module:
    """Build model ``name`` from its checkpoint's config, load its tensors, return it in eval mode.

    Raises ``CheckpointError`` (never a bare traceback) for a missing file, a checkpoint of another model,
    a weights file that does not match its SHA-256, cannot be read, or whose tensor names or shapes differ
    from the model's.
    """
    s = spec(name)
    meta = read_meta(name, directory)
    weights, meta_path = paths(name, directory)
    remedy = f"Re-create it with: python -m prodlab train {name}"
    recorded = meta.get("weights_sha256")
    if recorded is not None and data.sha256(weights) != recorded:
        raise CheckpointError(f"corrupt checkpoint {weights}: its SHA-256 differs from the one in {meta_path.name}. "
                              f"{remedy}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"corrupt checkpoint {weights}: {err}. {remedy}") from err
    cfg = _config_from(type(s.config), meta.get("config", {}), meta_path)
    model = s.build(cfg)
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


def balanced_labels(n: int, n_classes: int = len(data.CLASS_NAMES)) -> torch.Tensor:
    """0, 1, ..., 9, 0, 1, ... : ``n`` labels with every class as often as possible (int64)."""
    return torch.arange(n, dtype=torch.int64) % n_classes


@torch.no_grad()
def generate(
    name: str, n: int, seed: int = 0, directory: Path | None = None, batch_size: int = 1000,
    model: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples of generative model ``name``: uint8 images N x 28 x 28 (product bright on black) and, for a
    class-conditional model, their requested labels (int64, balanced); ``None`` otherwise.

    Deterministic for a given seed: the model draws its noise from one ``torch.Generator`` seeded with ``seed``.
    """
    s = spec(name)
    if not s.generative:
        kinds = ", ".join(generative_models()) or "none registered yet"
        raise ModelError(f"{name} is not a generative model (generative models: {kinds})")
    if n < 1:
        raise ModelError(f"the number of samples must be at least 1, not {n}")
    model = model if model is not None else load(name, directory)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    labels = balanced_labels(n) if s.conditional else None
    chunks = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = model.sample(stop - start, generator, labels=None if labels is None else labels[start:stop])
        chunks.append(data.to_uint8(x))
    return torch.cat(chunks), labels
