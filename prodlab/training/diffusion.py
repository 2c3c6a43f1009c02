"""Training diffusion and flow models (chapter 08): the recipe, the step, the loop and the latent prior's data.

:func:`diffusion_step` is one optimiser step on one batch and nothing else (draw ``t`` and the noise, build
``x_t``, regress the target, clip, step), so chapter 08 can run it by hand and compare. :func:`train_diffusion`
runs it in the workbook's one training loop (``prodlab.training.loop``: device, threads, torchrun, resume,
divergence checks, history) with this family's hooks: learning-rate warm-up and cosine decay, and an exponential
moving average of the weights. The same family trains the U-Net on images (``diffusion``) and the MLP prior on a
shipped VAE's latent codes (``latent-diffusion``). Measuring them (the screening, guidance, sampler steps and the
registry's trainers) is :mod:`prodlab.training.diffusion_measure`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prodlab import config, data, datasets, diffusion, distributed, runs
from prodlab.datasets.spec import ImageSpec
from prodlab.models import conditions, unet
from prodlab.models import gan as gan_models
from prodlab.training import loop


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


def learning_rate(recipe: DiffusionRecipe, step: int, total: int) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine decay from ``lr`` to ``lr / 10`` at step ``total``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = min(1.0, (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps))
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def diffusion_step(model: nn.Module, opt: torch.optim.Optimizer, x0: torch.Tensor, y: torch.Tensor | None,
                   recipe: DiffusionRecipe, generator: torch.Generator, null_label: diffusion.Null | None = None
                   ) -> dict[str, float]:
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


class DiffusionFamily(loop.Family):
    """A diffusion or flow model as the training loop sees it (chapter 08): AdamW, :func:`diffusion_step` per
    batch, and two hooks: the learning rate of :func:`learning_rate` before every step, and the moving average of
    the weights after it (with a short warm-up, ``(1 + s) / (10 + s)``, so early steps count). The same family
    trains the U-Net on images and the MLP prior on a VAE's latent codes: ``make`` builds the network."""

    def __init__(self, make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor | None,
                 recipe: DiffusionRecipe, null_label: diffusion.Null | None) -> None:
        super().__init__()
        self.make, self.x, self.y, self.recipe, self.null_label = make, x, y, recipe, null_label
        self.batch_size, self.epochs = recipe.batch_size, recipe.epochs

    def build(self, device: torch.device) -> None:
        self.model = self.make().to(device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.net = distributed.wrap(self.model, device)
        self.modules = {"model": self.model, "ema": self.ema}
        self.optimizers = {"opt": torch.optim.AdamW(self.model.parameters(), lr=self.recipe.lr, weight_decay=0.0)}

    def data(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x, self.y

    def schedule(self, state: loop.State) -> None:
        """Set the learning rate of :func:`learning_rate` for the coming step."""
        for group in self.optimizers["opt"].param_groups:
            group["lr"] = learning_rate(self.recipe, state.step, state.total_steps)

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: loop.State) -> dict[str, float]:
        self.schedule(state)
        return diffusion_step(self.net, self.optimizers["opt"], x, y, self.recipe, state.generator, self.null_label)

    def after_step(self, state: loop.State) -> None:
        decay = min(self.recipe.ema_decay, state.step / (9 + state.step))  # (1 + s) / (10 + s) before step s + 1
        gan_models.ema_update(self.ema, self.model, decay)

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        return f"loss {means['loss']:.4f}"


def train_diffusion(make: Callable[[], nn.Module], x_all: torch.Tensor, labels: torch.Tensor | None,
                    recipe: DiffusionRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
                    resume: bool = False, null_label: diffusion.Null | None = None, device: torch.device | None = None,
                    threads: int | None = None) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train the network ``make()`` (a ``f(x_t, t, y)`` model) on ``x_all`` in the workbook's training loop;
    return (its moving average on the CPU, eval mode; the per-step history). Chapter 08.

    After every epoch the state goes to ``run`` (``resume=True`` continues from it and reproduces the
    uninterrupted run); a NaN or infinite loss stops the run with ``runs.DivergenceError``. ``device`` and
    ``threads`` as for every family; under torchrun the model trains in DDP on each rank's slice of the batch.
    """
    family = DiffusionFamily(make, x_all, labels, recipe, null_label)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    return family.ema.cpu().eval(), state.steps


def image_config(recipe: DiffusionRecipe, image: ImageSpec) -> unet.DiffusionConfig:
    """The U-Net config a recipe trains for images ``image``: its width and objective, the objective's sampler."""
    base = unet.DiffusionConfig(image)
    return dataclasses.replace(base, width=recipe.width, objective=recipe.objective,
                               sampler=_sampler_for(base.sampler, recipe.objective))


def _sampler_for(preferred: str, objective: str) -> str:
    """``preferred`` if it fits the objective, else the objective's last sampler (Heun for flow, DDIM for eps)."""
    return preferred if preferred in diffusion.SAMPLERS[objective] else diffusion.SAMPLERS[objective][-1]


def train_images(recipe: DiffusionRecipe, dataset: str = datasets.DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images in [-1, 1] and their labels (the first ``train_limit`` of them)."""
    images, labels = data.load("train", dataset=dataset)
    return data.normalize(data.to_float(images[: recipe.train_limit])), labels[: recipe.train_limit]


def train_image_model(recipe: DiffusionRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
                      resume: bool = False, dataset: str = datasets.DEFAULT, device: torch.device | None = None,
                      threads: int | None = None) -> tuple[unet.DiffusionModel, list[dict[str, float]]]:
    """Train the class-conditional U-Net of ``diffusion`` with ``recipe`` on ``dataset``; return its EMA and the
    history."""
    cfg = image_config(recipe, data.spec(dataset))
    x, y = train_images(recipe, dataset)
    y = conditions.training_labels(cfg, y, dataset) if cfg.n_classes else None
    return train_diffusion(lambda: unet.DiffusionModel(cfg), x, y, recipe, run, seed, progress, resume,
                           null_label=cfg.null_label, device=device, threads=threads)


def loss_curve(history: list[dict[str, float]], window: int = 50) -> list[dict[str, float]]:
    """Mean loss over windows of ``window`` steps, with the CPU clock at the window's end (for the JSON)."""
    return [{"step": chunk[-1]["step"], "cpu_seconds": round(chunk[-1]["cpu_seconds"], 1),
             "loss": round(sum(r["loss"] for r in chunk) / len(chunk), 5)}
            for chunk in (history[i : i + window] for i in range(0, len(history), window))]


@torch.no_grad()
def latent_codes(vae: nn.Module, limit: int | None = None, kind: str = "mean", seed: int = 0,
                 dataset: str = datasets.DEFAULT) -> torch.Tensor:
    """The prior's training data: per training image the posterior mean ``mu(x)`` (``kind="mean"``) or one draw
    ``z ~ q(z|x)`` (``"sample"``: the aggregate posterior of Dai & Wipf 2019), under the first-stage VAE ``vae``."""
    x = data.to_float(data.load("train", dataset=dataset)[0][:limit])
    with config.one_thread():
        if kind == "mean":
            return vae.eval().embed(x)
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([vae.reparameterize(*vae.encode(b), generator) for b in x.split(1000)])


def build_latent_model(recipe: DiffusionRecipe, vae: nn.Module, codes: torch.Tensor) -> unet.LatentDiffusion:
    """A fresh latent prior holding a frozen copy of ``vae`` and the statistics that standardise ``codes``."""
    base = unet.LatentDiffusionConfig(vae.cfg)
    cfg = dataclasses.replace(base, hidden=recipe.width, objective=recipe.objective,
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
# The colour catalogue's model: the shipped recipe cut to 8 epochs. A step on 3 x 32 x 32 images costs 0.33 CPU-s
# on one thread (10 steps timed after 3), 1.5 times a grey one: 7,496 steps, about 41 CPU-minutes, inside 60.
COLOUR_RECIPE = dataclasses.replace(SHIPPED_RECIPE, epochs=8)
QUICK_RECIPE = DiffusionRecipe(epochs=1, train_limit=1024, warmup_steps=2)
# The prior sits on vae-sharp (beta = 0.25), not on vae (beta = 1): the vae's own reconstructions are only 28% below
# its samples' FID, so no prior over its codes could cut that FID by 30% (chapter 08, section 11).
LATENT_RECIPE = DiffusionRecipe(epochs=40, batch_size=256, lr=1e-3, width=256, label_dropout=0.0,
                                first_stage="vae-sharp")
QUICK_LATENT_RECIPE = dataclasses.replace(LATENT_RECIPE, epochs=2, train_limit=4096, warmup_steps=4)
