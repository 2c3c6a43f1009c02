"""Training diffusion and flow models (chapter 08): the recipe, the step, the loop and the latent prior's data.

:func:`diffusion_step` is one optimiser step on one batch and nothing else (draw ``t`` and the noise, build
``x_t``, regress the target, clip, step), so chapter 08 can run it by hand and compare. :func:`train_diffusion`
calls it with the bookkeeping around it (learning-rate warm-up and cosine decay, an exponential moving average of
the weights, the CPU clock, a state per epoch in ``runs/NAME`` for ``--resume``, divergence checks). The same loop
trains the U-Net on images (``diffusion``) and the MLP prior on a shipped VAE's latent codes
(``latent-diffusion``). Measuring them (the screening, guidance, sampler steps and the registry's trainers) is
:mod:`prodlab.training.diffusion_measure`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from prodlab import checkpoints, config, data, diffusion, runs
from prodlab.models import gan as gan_models
from prodlab.models import unet


@dataclass(frozen=True)
class DiffusionRecipe:
    """How a diffusion or flow model is trained (chapter 08). AdamW with a linear warm-up and a cosine decay to
    10%, gradients clipped at norm 1; ``label_dropout`` is the share of labels replaced by "no label" so that
    classifier-free guidance works. ``width``: U-Net channels (``diffusion``) or MLP units (``latent-diffusion``).
    """

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    objective: str = "flow"
    width: int = 16
    label_dropout: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    train_limit: int | None = None  # use only the first N training images (quick mode, screening, live demos)
    latent_codes: str = "mean"  # latent-diffusion only: fit the posterior means, or one sample z ~ q(z|x) per image
    first_stage: str = "vae"  # latent-diffusion only: the shipped VAE whose codes the prior fits, whose decoder draws

    def __post_init__(self) -> None:
        if self.objective not in diffusion.OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(diffusion.OBJECTIVES)}, not {self.objective!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.label_dropout < 1:
            raise ValueError("epochs must be >= 0, batch_size >= 1, lr > 0 and 0 <= label_dropout < 1")
        if not 0 <= self.ema_decay < 1 or self.width < 8 or self.width % 8:
            raise ValueError("ema_decay must be in [0, 1) and width a multiple of 8 (>= 8)")
        if self.latent_codes not in ("mean", "sample"):
            raise ValueError(f"latent_codes must be 'mean' or 'sample', not {self.latent_codes!r}")
        vaes = [name for name, spec in checkpoints.MODELS.items() if spec.kind == "vae"]
        if self.first_stage not in vaes:
            raise ValueError(f"first_stage must be one of {', '.join(vaes)}, not {self.first_stage!r}")


def learning_rate(recipe: DiffusionRecipe, step: int, total: int) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine decay from ``lr`` to ``lr / 10`` at step ``total``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = min(1.0, (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps))
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def diffusion_step(model: nn.Module, opt: torch.optim.Optimizer, x0: torch.Tensor, y: torch.Tensor | None,
                   recipe: DiffusionRecipe, generator: torch.Generator, null_label: int = 10) -> dict[str, float]:
    """One training step on a batch ``x0`` (labels ``y`` or None): the loss of ``diffusion.diffusion_loss``,
    backpropagated, clipped at ``recipe.grad_clip`` and applied. Returns ``loss`` and the gradient norm.

    Deterministic given its inputs and the state of ``generator``. Chapter 08 runs it by hand.
    """
    loss = diffusion.diffusion_loss(model, x0, y, recipe.objective, generator, recipe.label_dropout, null_label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return {"loss": float(loss.detach()), "grad_norm": float(norm)}


@dataclass
class _State:
    model: nn.Module
    ema: nn.Module
    opt: torch.optim.Optimizer
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _start(model: nn.Module, recipe: DiffusionRecipe, run: runs.Run, generator: torch.Generator,
           resume: bool) -> tuple[_State, int]:
    """A fresh model, its moving average and optimiser; or all of them restored from ``run`` when resuming."""
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    state = _State(model, ema, opt)
    if not resume:
        shutil.rmtree(run.path, ignore_errors=True)
    epoch, state.step, state.history = run.restore({"model": model, "ema": ema}, {"opt": opt}, generator)
    return state, epoch


def _ema_update(state: _State, decay: float) -> None:
    """The moving average of the weights, with a short warm-up (``(1 + s) / (10 + s)``) so early steps count."""
    gan_models.ema_update(state.ema, state.model, min(decay, (1 + state.step) / (10 + state.step)))


def train_diffusion(model: nn.Module, x_all: torch.Tensor, labels: torch.Tensor | None, recipe: DiffusionRecipe,
                    run: runs.Run, seed: int = 0, progress: bool = True, resume: bool = False,
                    null_label: int = 10) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train ``model`` (a ``f(x_t, t, y)`` network) on ``x_all`` on one CPU thread; return (EMA model, history).

    After every epoch the state goes to ``run`` (``resume=True`` continues from it and reproduces the
    uninterrupted run); a NaN or infinite loss stops the run with ``runs.DivergenceError``. Chapter 08.
    """
    with config.one_thread():
        generator = config.seed_everything(seed)
        state, start_epoch = _start(model, recipe, run, generator, resume)
        monitor = runs.DivergenceMonitor(run)
        cpu_before, cpu_start = (state.history[-1]["cpu_seconds"] if state.history else 0.0), time.process_time()
        bs, n_batches = recipe.batch_size, len(x_all) // recipe.batch_size
        total = recipe.epochs * n_batches
        model.train()
        for epoch in range(start_epoch + 1, recipe.epochs + 1):
            order = torch.randperm(len(x_all), generator=generator)
            bar = tqdm(range(n_batches), desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress, leave=False,
                       mininterval=5.0)
            for i in bar:
                idx = order[i * bs : (i + 1) * bs]
                for group in state.opt.param_groups:
                    group["lr"] = learning_rate(recipe, state.step, total)
                row = diffusion_step(model, state.opt, x_all[idx], None if labels is None else labels[idx], recipe,
                                     generator, null_label)
                _ema_update(state, recipe.ema_decay)
                state.step += 1
                monitor.check(state.step, {"loss": row["loss"]})
                state.history.append({"step": state.step, **row,
                                      "cpu_seconds": round(cpu_before + time.process_time() - cpu_start, 3)})
                bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            run.save(epoch, state.step, {"model": model, "ema": state.ema}, {"opt": state.opt}, generator,
                     state.history)
            if progress:
                mean = sum(r["loss"] for r in state.history[-n_batches:]) / n_batches
                tqdm.write(f"epoch {epoch}/{recipe.epochs}: step {state.step}, loss {mean:.4f}, "
                           f"{state.history[-1]['cpu_seconds']:.0f} CPU-s")
        return state.ema.eval(), state.history


def image_config(recipe: DiffusionRecipe, base: unet.DiffusionConfig | None = None) -> unet.DiffusionConfig:
    """The U-Net config a recipe trains: its width and objective, with the objective's default sampler."""
    base = base or checkpoints.spec("diffusion").config
    return dataclasses.replace(base, width=recipe.width, objective=recipe.objective,
                               sampler=_sampler_for(base.sampler, recipe.objective))


def _sampler_for(preferred: str, objective: str) -> str:
    """``preferred`` if it fits the objective, else the objective's last sampler (Heun for flow, DDIM for eps)."""
    return preferred if preferred in diffusion.SAMPLERS[objective] else diffusion.SAMPLERS[objective][-1]


def train_images(recipe: DiffusionRecipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images in [-1, 1] and their labels (the first ``train_limit`` of them)."""
    images, labels = data.load("train")
    return data.normalize(data.to_float(images[: recipe.train_limit])), labels[: recipe.train_limit]


def train_image_model(recipe: DiffusionRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
                      resume: bool = False) -> tuple[unet.DiffusionModel, list[dict[str, float]]]:
    """Train the class-conditional U-Net of ``diffusion`` with ``recipe``; return its EMA and the history."""
    cfg = image_config(recipe)
    x, y = train_images(recipe)
    model = unet.DiffusionModel(cfg)
    ema, history = train_diffusion(model, x, y if cfg.n_classes else None, recipe, run, seed, progress, resume,
                                   null_label=cfg.n_classes)
    return ema, history


def loss_curve(history: list[dict[str, float]], window: int = 50) -> list[dict[str, float]]:
    """Mean loss over windows of ``window`` steps, with the CPU clock at the window's end (for the JSON)."""
    return [{"step": chunk[-1]["step"], "cpu_seconds": round(chunk[-1]["cpu_seconds"], 1),
             "loss": round(sum(r["loss"] for r in chunk) / len(chunk), 5)}
            for chunk in (history[i : i + window] for i in range(0, len(history), window))]


@torch.no_grad()
def latent_codes(vae: nn.Module, limit: int | None = None, kind: str = "mean", seed: int = 0) -> torch.Tensor:
    """The prior's training data: per training image the posterior mean ``mu(x)`` (``kind="mean"``) or one draw
    ``z ~ q(z|x)`` (``"sample"``: the aggregate posterior of Dai & Wipf 2019), under the first-stage VAE ``vae``."""
    x = data.to_float(data.load("train")[0][:limit])
    with config.one_thread():
        if kind == "mean":
            return vae.eval().embed(x)
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([vae.reparameterize(*vae.encode(b), generator) for b in x.split(1000)])


def build_latent_model(recipe: DiffusionRecipe, vae: nn.Module, codes: torch.Tensor) -> unet.LatentDiffusion:
    """A fresh latent prior holding a frozen copy of ``vae`` and the statistics that standardise ``codes``."""
    base = checkpoints.spec("latent-diffusion").config
    cfg = dataclasses.replace(base, latent_dim=codes.shape[1], hidden=recipe.width, objective=recipe.objective,
                              sampler=_sampler_for(base.sampler, recipe.objective))
    model = unet.LatentDiffusion(cfg)
    model.vae.load_state_dict(vae.state_dict())
    model.vae.requires_grad_(False)
    model.z_mean.copy_(codes.mean(0))
    model.z_std.copy_(codes.std(0).clamp_min(1e-3))
    return model


# The shipped budget: 16 passes over the 60,000 images in batches of 64 (14,992 steps, 54 CPU-minutes on one
# thread), inside the 60 CPU-minutes chapter 08 allows.
SHIPPED_RECIPE = DiffusionRecipe(epochs=16, batch_size=64, warmup_steps=200, objective="flow", width=16)
# The same recipe cut to 5 epochs (about 14 CPU-minutes, the cdcgan's budget): the family table's equal-budget row.
SHORT_RECIPE = dataclasses.replace(SHIPPED_RECIPE, epochs=5)
QUICK_RECIPE = DiffusionRecipe(epochs=1, train_limit=1024, warmup_steps=2)
# The prior sits on vae-sharp (beta = 0.25), not on vae (beta = 1): the vae's own reconstructions are only 28% below
# its samples' FID, so no prior over its codes could cut that FID by 30% (chapter 08, section 11).
LATENT_RECIPE = DiffusionRecipe(epochs=40, batch_size=256, lr=1e-3, width=256, label_dropout=0.0,
                                first_stage="vae-sharp")
QUICK_LATENT_RECIPE = dataclasses.replace(LATENT_RECIPE, epochs=2, train_limit=4096, warmup_steps=4)
