"""The one training loop: every family (GAN, VAE, classifier, diffusion) runs its step function inside it.

A family (:class:`Family`) owns its networks, its optimisers and its glass-box step (``gan_step``, ``vae_step``,
``classifier_step``, ``diffusion_step``: the functions the chapters run by hand) and a few small hooks (a moving
average of the weights, snapshots of a fixed noise batch, a learning-rate schedule, a summary per epoch). The loop
(:func:`train`) owns everything around them, the same for every family:

* the threads (all cores by default, one for exact timing work), the device, and under torchrun the process
  group and this rank's slice of every global batch (``prodlab.distributed``);
* seeding: the same initial weights on every rank, each rank its own random stream (``distributed.rank_seed``);
* resume: after every epoch the state goes to the run folder (``runs.Run``); ``resume=True`` continues from it and
  reproduces the uninterrupted run bit for bit;
* the divergence monitor (non-finite losses, a pinned discriminator), the history (a row per step and a row per
  epoch, with the CPU clock), the progress bar and the one log line per epoch.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from prodlab import config, distributed, runs


@dataclass(frozen=True)
class Setup:
    """Where and how a run executes; not part of the recipe (the same recipe runs anywhere): its run folder, the
    seed, progress output, resume, the device (default ``config.device()``), the CPU threads (``None``: all) and
    bf16 autocast."""

    run: runs.Run
    seed: int = 0
    progress: bool = True
    resume: bool = False
    device: torch.device | None = None
    threads: int | None = None
    autocast: bool = False  # bf16 autocast of the steps (GPUs with bf16; tried by ``bench devices --bf16``)


@dataclass
class State:
    """What the loop carries between steps and hands to a family's hooks."""

    device: torch.device
    generator: torch.Generator  # this rank's random stream: batches, noise, augmentation
    total_steps: int  # steps of the whole run (for learning-rate schedules)
    epoch: int = 0
    step: int = 0
    steps: list[dict[str, float]] = field(default_factory=list)  # one row per step (families that keep them)
    epochs: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    cpu_seconds: float = 0.0  # process CPU time of the training steps so far (all threads; resumed runs included)


class Family:
    """What a model family gives the loop. Subclasses set ``modules`` and ``optimizers`` in :meth:`build` and
    implement :meth:`step`; the other hooks do nothing unless overridden.

    ``optimizers`` holds anything with ``state_dict``/``load_state_dict`` that a resume must restore (optimisers
    and learning-rate schedulers). ``per_step_history``: keep a row per step (GANs, diffusion) or only per epoch.
    """

    per_step_history = True
    drop_last = True  # whether the last, partial global batch of an epoch is dropped
    patience = 200  # steps a GAN's D may stay pinned at 0 or 1 before the run is stopped
    batch_size: int
    epochs: int

    def __init__(self) -> None:
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Any] = {}

    def build(self, device: torch.device) -> None:
        """Create the networks (the loop has seeded torch: every rank gets the same weights) and optimisers."""
        raise NotImplementedError

    def data(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training inputs, already in the model's range, and their labels (or None)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: State) -> dict[str, float]:
        """One batch: the family's glass-box step function. Returns the numbers the history keeps."""
        raise NotImplementedError

    def checks(self, row: dict[str, float]) -> tuple[dict[str, float], float | None, float | None]:
        """What the divergence monitor looks at: the losses (must be finite), and ``D(x)``, ``D(G(z))`` for GANs."""
        return row, None, None

    def start_epoch(self, state: State) -> None:
        """Before an epoch's first step (e.g. a device-side noise stream)."""

    def after_step(self, state: State) -> None:
        """After every step (a moving average of the weights, snapshots)."""

    def epoch_summary(self, state: State, rows: list[dict[str, float]], n: int) -> dict[str, Any]:
        """The epoch's row of the history beyond its means (e.g. the test accuracy); ``rows`` are its steps
        (averaged over ranks) and ``n`` the number of training images."""
        return {}

    def save_extra(self, run: runs.Run, state: State) -> None:
        """Rank 0, after every epoch: files beside the state (snapshots)."""

    def begin(self, run: runs.Run, state: State) -> None:
        """Before the first step of this process: a fresh run (``state.step == 0``) or a resumed one, whose
        files written by :meth:`save_extra` it may read back."""

    def log(self, state: State, means: dict[str, float]) -> str:
        """The epoch's log line after ``epoch E/N:``."""
        return ", ".join(f"{k} {v:.4g}" for k, v in means.items())



class RecipeFamily(Family):
    """A family made the usual way: from a model config, a recipe with ``batch_size`` and ``epochs``, the data set
    it trains on and the seed (the classifier's, the encoder's and the text-image model's)."""

    def __init__(self, cfg: Any, recipe: Any, dataset: str, seed: int) -> None:
        super().__init__()
        self.cfg, self.recipe, self.dataset, self.seed = cfg, recipe, dataset, seed
        self.batch_size, self.epochs = recipe.batch_size, recipe.epochs

    def optimise(self, model: nn.Module, device: torch.device, images: int, lr: float) -> None:
        """Hold ``model`` (DDP-wrapped as ``net`` on ``device``) with AdamW and a one-cycle learning rate peaking at
        ``lr`` over the recipe's epochs of ``images`` training images: what the classifier, the encoder, the
        text-image model and the first stage share."""
        self.model, self.net, r = model, distributed.wrap(model, device), self.recipe
        steps = max(1, images // r.batch_size) if self.drop_last else -(-images // r.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=r.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=max(1, r.epochs),
                                                       steps_per_epoch=steps)
        self.modules, self.optimizers = {"model": model}, {"optimizer": optimizer, "schedule": schedule}

@contextmanager
def _execution(setup: Setup) -> Iterator[torch.device]:
    device = setup.device or config.device()
    with config.threads(setup.threads), distributed.process_group(device):
        yield device


def train(family: Family, setup: Setup) -> State:
    """Train ``family`` for its epochs; return the final :class:`State` (histories, step, CPU time).

    Ctrl-C and divergence leave the last finished epoch on disk (``runs.Interrupted``, ``runs.DivergenceError``).
    Under torchrun every rank calls this; rank 0 alone writes and logs.
    """
    progress = setup.progress and distributed.is_main()
    with _execution(setup) as device:
        config.seed_everything(setup.seed)  # the same initial weights on every rank
        generator = torch.Generator().manual_seed(distributed.rank_seed(setup.seed))
        family.build(device)
        x_all, y_all = family.data()
        sampler = distributed.ShardSampler(len(x_all), family.batch_size, generator, setup.seed, family.drop_last)
        state = State(device, generator, family.epochs * len(sampler))
        _start(family, setup, state)
        family.begin(setup.run, state)
        monitor = runs.DivergenceMonitor(setup.run, patience=family.patience)
        for epoch in range(state.epoch + 1, family.epochs + 1):
            sampler.set_epoch(epoch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.autocast):
                _epoch(family, state, sampler, x_all, y_all, monitor, progress)
            state.epoch = epoch
            if distributed.is_main():
                family.save_extra(setup.run, state)
            setup.run.save(epoch, state.step, family.modules, family.optimizers, generator,
                           {"steps": state.steps, "epochs": state.epochs, "cpu_seconds": state.cpu_seconds})
            if progress:
                tqdm.write(f"epoch {epoch}/{family.epochs}: step {state.step}, "
                           f"{family.log(state, _means(state.epochs[-1]))}, {state.cpu_seconds:.0f} CPU-s")
        return state


def _start(family: Family, setup: Setup, state: State) -> None:
    """A fresh run removes its old folder (rank 0 does; no rank reads it); a resumed one restores everything."""
    if not setup.resume:
        if distributed.is_main():
            shutil.rmtree(setup.run.path, ignore_errors=True)
        return
    state.epoch, state.step, saved = setup.run.restore(family.modules, family.optimizers, state.generator)
    if saved:
        if not isinstance(saved, dict) or "steps" not in saved:
            raise runs.RunError(f"{setup.run.state_path} was written by an older prodlab; delete the folder "
                                f"{setup.run.path} to start over")
        state.steps, state.epochs, state.cpu_seconds = list(saved["steps"]), list(saved["epochs"]), saved["cpu_seconds"]


def _epoch(family: Family, state: State, sampler: distributed.ShardSampler, x_all: torch.Tensor,
           y_all: torch.Tensor | None, monitor: runs.DivergenceMonitor, progress: bool) -> None:
    """One pass over the data: a step per batch, the monitor, the history rows, the epoch's summary row."""
    for module in family.modules.values():
        module.train()
    family.start_epoch(state)
    rows: list[dict[str, float]] = []
    start, cpu_start, cpu_before = time.perf_counter(), time.process_time(), state.cpu_seconds
    bar = tqdm(sampler, total=len(sampler), desc=f"epoch {state.epoch + 1}/{family.epochs}", disable=not progress,
               leave=False, mininterval=5.0)
    for idx in bar:
        x = x_all[idx].to(state.device)
        y = y_all[idx].to(state.device) if y_all is not None else None
        row = distributed.mean_across_ranks({**family.step(x, y, state), "n": float(len(idx))})
        state.step += 1
        losses, d_real, d_fake = family.checks(row)
        monitor.check(state.step, losses, d_real, d_fake)  # every rank stops at the same step
        state.cpu_seconds = cpu_before + time.process_time() - cpu_start
        rows.append(row)
        if family.per_step_history:
            state.steps.append({"step": state.step, **{k: v for k, v in row.items() if k != "n"},
                                "cpu_seconds": round(state.cpu_seconds, 3)})
        family.after_step(state)
        bar.set_postfix({k: f"{v:.4g}" for k, v in list(row.items())[:2]}, refresh=False)
    steps_seconds = time.perf_counter() - start
    weights = [r["n"] for r in rows]  # images per rank in each step (the means over ranks of equal slices)
    n = round(sum(weights) * distributed.world().size)
    means = {k: sum(r[k] * w for r, w in zip(rows, weights, strict=True)) / sum(weights)
             for k in rows[0] if k != "n"} if rows else {}
    state.epochs.append({"epoch": state.epoch + 1, "images": n, **{k: round(v, 5) for k, v in means.items()},
                         **family.epoch_summary(state, rows, n),
                         "seconds": round(time.perf_counter() - start, 1), "steps_seconds": round(steps_seconds, 2),
                         "cpu_seconds": round(state.cpu_seconds - cpu_before, 1)})


def _means(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k not in ("epoch", "images", "seconds", "steps_seconds", "cpu_seconds")
            and isinstance(v, float)}
