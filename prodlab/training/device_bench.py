"""``python -m prodlab bench devices``: every family's quick recipe trained on a device and on the CPU, each checked
to have run where it was asked (not silently on the CPU), and timed: images per second, seconds per step, and what
the shipped recipe would take at that speed. ``make gpu-check`` runs it on CUDA (optionally with bf16 autocast);
on the CPU it compares one thread with all cores."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from prodlab import checkpoints, config, data, files, runs
from prodlab.models import unet
from prodlab.training import diffusion, loop, registry
from prodlab.training.classifier import ClassifierFamily
from prodlab.training.gan import GANFamily
from prodlab.training.vae import VAEFamily

FAMILY_MODELS = ("dcgan", "vae", "classifier", "diffusion")


def family_for(name: str, recipe: Any, seed: int = 0) -> loop.Family:
    """The training-loop family of registered model ``name`` with ``recipe``, on the default data set."""
    cfg = registry.entry(name).config(data.spec())
    kind = registry.entry(name).kind
    if kind == "gan":
        return GANFamily(cfg, recipe, data.DEFAULT, seed)
    if kind == "vae":
        return VAEFamily(cfg, recipe, data.DEFAULT)
    if kind == "classifier":
        return ClassifierFamily(cfg, recipe, data.DEFAULT, seed)
    x, y = diffusion.train_images(recipe)
    image_cfg = diffusion.image_config(recipe, data.spec())
    return diffusion.DiffusionFamily(lambda: unet.DiffusionModel(image_cfg), x, y, recipe, image_cfg.n_classes)


def time_family(name: str, device: torch.device, threads: int | None, autocast: bool, folder: Path) -> dict[str, Any]:
    """Train ``name``'s quick recipe for one epoch on ``device``; where its weights were, and how fast it went."""
    recipe = registry.entry(name).quick
    family = family_for(name, recipe)
    state = loop.train(family, loop.Setup(runs.Run(f"{name}-{device.type}", folder), progress=False, device=device,
                                          threads=threads, autocast=autocast))
    where = sorted({p.device.type for m in family.modules.values() for p in m.parameters()})
    epoch, shipped = state.epochs[-1], registry.entry(name).recipe
    per_image = epoch["steps_seconds"] / max(epoch["images"], 1)  # the steps alone, not the epoch's measurements
    n_train = len(data.load("train")[1])
    shipped_images = shipped.epochs * min(shipped.train_limit or n_train, n_train)
    return {"model": name, "device": device.type, "threads": threads or torch.get_num_threads(),
            "bf16_autocast": autocast, "weights_on": where, "ran_on_device": where == [device.type],
            "steps": state.step, "images": epoch["images"], "batch_size": recipe.batch_size,
            "steps_seconds": epoch["steps_seconds"], "cpu_seconds": epoch["cpu_seconds"],
            "images_per_second": round(1 / max(per_image, 1e-9), 1),
            "shipped_recipe_images": shipped_images,
            "shipped_recipe_minutes_at_this_speed": round(per_image * shipped_images / 60, 1)}


def bench_devices(device: torch.device, autocast: bool = False, names: tuple[str, ...] = FAMILY_MODELS,
                  out: Path | None = None) -> dict[str, Any]:
    """Each family on ``device`` (and, when that is not the CPU, on the CPU with all cores, for the speed-up); on the
    CPU alone, one thread against all cores. Written to ``out`` as JSON when given."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="prodlab-devices-") as tmp:
        for name in names:
            if device.type == "cpu":
                rows.append(time_family(name, device, 1, autocast, Path(tmp)))
                rows.append(time_family(name, device, None, autocast, Path(tmp)))
            else:
                rows.append(time_family(name, device, None, autocast, Path(tmp)))
                rows.append(time_family(name, torch.device("cpu"), None, False, Path(tmp)))
    result = {"device": device.type, "device_name": torch.cuda.get_device_name() if device.type == "cuda" else
              checkpoints.machine()["processor"], "machine": checkpoints.machine(), "quick_mode": config.quick(),
              "rows": rows, "all_ran_where_asked": all(r["ran_on_device"] for r in rows)}
    if out is not None:
        files.write_json(out, result)
    return result


def format_rows(result: dict[str, Any]) -> str:
    """The device bench as a text table: one row per family and device."""
    lines = [f"{'model':12s} {'device':6s} {'threads':>7s} {'bf16':>5s} {'ran there':>9s} {'images/s':>9s} "
             f"{'shipped recipe, min':>20s}"]
    for r in result["rows"]:
        lines.append(f"{r['model']:12s} {r['device']:6s} {r['threads']:7d} {str(r['bf16_autocast']):>5s} "
                     f"{str(r['ran_on_device']):>9s} {r['images_per_second']:9.1f} "
                     f"{r['shipped_recipe_minutes_at_this_speed']:20.1f}")
    return "\n".join(lines)
