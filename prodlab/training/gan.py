"""Training a GAN with the seven steps of the article's §3.1.2 (taught in notebook 02).

:func:`gan_step` is steps 2-6 for one batch and nothing else, so a notebook can run it by hand and compare; the
loop :func:`train_gan` calls it and keeps the bookkeeping (resume, the moving average of G, snapshots of a fixed
noise batch, the CPU clock, divergence checks) in small named helpers around it. It trains on ``config.device()``
and, under torchrun, in several processes with DDP (``prodlab.distributed``; README, "More than one machine").

The article names neither an architecture nor an optimiser. The defaults of :class:`GANRecipe` are its losses
(§4: ``L_D`` binary cross-entropy, the non-saturating ``L_G``) with DCGAN's Adam settings (Radford et al. 2016:
lr 2e-4, betas 0.5/0.999) and batches of 64: "the article's recipe" in this workbook means its losses with those
common settings, which are ours, not the article's.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from prodlab import checkpoints, config, data, distributed, files, losses, runs
from prodlab.models import gan as gan_models

LossFn = Callable[..., torch.Tensor]

# A recipe's ``loss`` names a pair (discriminator loss, generator loss) of ``prodlab.losses``, all on logits.
GAN_LOSSES: dict[str, tuple[LossFn, LossFn]] = {
    "bce": (losses.discriminator_loss, losses.generator_loss_nonsaturating),  # the article's L_D and L_G (§4)
    "bce-saturating": (losses.discriminator_loss, losses.generator_loss_saturating),  # the minimax L_G of §2.2
    "hinge": (losses.discriminator_loss_hinge, losses.generator_loss_hinge),  # Lim & Ye 2017; not in the article
    "lsgan": (losses.discriminator_loss_lsgan, losses.generator_loss_lsgan),  # Mao et al. 2017; not in the article
}
SNAPSHOT_FILE = "snapshots.safetensors"


@dataclass(frozen=True)
class GANRecipe:
    """How a GAN is trained (§3.1.2); defined in chapter 02. The defaults: the article's losses (§4) with DCGAN's
    Adam settings and batches of 64 (our choice: the article names no optimiser or batch size).

    The improvements are switches: ``loss="hinge"``; two time-scale learning rates (``lr_d > lr_g``, Heusel et al.
    2017); ``ema_decay > 0``: an exponential moving average of G's weights, which watches training without
    changing it (so the raw G of the same run *is* the recipe without EMA), its BN statistics recomputed at the end.
    """

    epochs: int = 6
    batch_size: int = 64
    loss: str = "bce"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_decay: float = 0.0  # 0: no moving average
    train_limit: int | None = None  # use only the first N training images (quick mode, live demos)
    n_snapshot: int = 10  # images of the fixed noise batch kept at steps 10, 20, 50, 100, 200, 500, ... and the last
    patience: int = 200  # steps D may stay pinned at 0 or 1 before the run is stopped
    bn_batches: int = 40  # noise batches that re-estimate the EMA generator's BN statistics

    def __post_init__(self) -> None:
        if self.loss not in GAN_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(GAN_LOSSES)}, not {self.loss!r}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError("epochs must be >= 0 and batch_size >= 1")


@dataclass
class DataParallelGAN:
    """The GAN as :func:`gan_step` sees it under torchrun: G and D each in DDP (``distributed.wrap``).

    Both are wrapped because both are updated: DDP averages D's gradients across ranks in step 5 and G's in
    step 6. D runs three times a step. Its real and fake passes share one ``backward``, which DDP treats like one
    pass that uses each weight twice (autograd sums both gradients before DDP's hook sees them). In the third pass
    (step 6) D's weights are frozen, so that ``backward`` reaches G's weights only and DDP averages G's.
    Chapter 02 (notebooks/02_gan.ipynb).
    """

    gan: gan_models.GAN
    generator: nn.Module
    discriminator: nn.Module

    @property
    def cfg(self) -> gan_models.GANConfig:
        return self.gan.cfg

    @property
    def conditional(self) -> bool:
        return self.gan.conditional

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.gan.noise(n, generator)


def gan_step(
    gan: gan_models.GAN | DataParallelGAN, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
    loss_fns: tuple[LossFn, LossFn], x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator,
) -> dict[str, float]:
    """§3.1.2 steps 2-6 on one real batch ``x`` (labels ``y`` for a conditional GAN); chapter 02 runs it by hand.

    Returns what the loop logs: ``loss_d``, ``loss_g``, and the mean ``D(x)`` and ``D(G(z))`` before D's update.
    Deterministic given its inputs and the state of ``generator`` (the only source of randomness; a CPU
    generator, so every device gets the same noise).
    """
    loss_d_fn, loss_g_fn = loss_fns
    g, d, n = gan.generator, gan.discriminator, len(x)
    z = gan.noise(n, generator).to(x.device)  # Step 2: sample noise z ~ N(0, I).
    y_fake = torch.randint(0, gan.cfg.n_classes, (n,), generator=generator).to(x.device) if gan.conditional else None
    fake = g(z, y_fake)  # Step 3: generate fakes G(z).
    # Step 4 is the caller's: x is the real batch. Step 5: update D with L_D (fakes detached: this must not move G).
    real_logits, fake_logits = d(x, y), d(fake.detach(), y_fake)
    loss_d = loss_d_fn(real_logits, fake_logits)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # Step 6: update G with L_G through the updated D (D's weights frozen: no gradient is wasted on them).
    d.requires_grad_(False)
    loss_g = loss_g_fn(d(fake, y_fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    d.requires_grad_(True)
    return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
            "d_real": float(torch.sigmoid(real_logits.detach()).mean()),
            "d_fake": float(torch.sigmoid(fake_logits.detach()).mean())}


@dataclass
class GANRun:
    """What :func:`train_gan` returns.

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    gan: gan_models.GAN  # the trained G (raw weights) and D, eval mode
    ema: gan_models.Generator | None  # the moving average of G, BN statistics recomputed (None without EMA)
    history: list[dict[str, float]]  # one row per step: step, loss_d, loss_g, d_real, d_fake, cpu_seconds
    snapshots: dict[int, torch.Tensor]  # step -> uint8 images of the fixed noise batch made by the raw G

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the training steps (process time, all threads; a resumed run includes the earlier part)."""
        return self.history[-1]["cpu_seconds"] if self.history else 0.0

    def shipped(self) -> gan_models.GAN:
        """The GAN with the EMA generator when there is one (and this run's D), else the raw one."""
        return self.gan if self.ema is None else with_generator(self.gan, self.ema)


def with_generator(gan: gan_models.GAN, g: gan_models.Generator) -> gan_models.GAN:
    """A copy of ``gan`` whose generator has the weights and BN statistics of ``g``.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    out = copy.deepcopy(gan)
    out.generator.load_state_dict(g.state_dict())
    return out.eval()


def is_snapshot_step(step: int) -> bool:
    """Steps 10, 20, 50, 100, 200, 500, 1000, ...: evenly spaced on a log axis, where a GAN's looks change.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    digits = str(step)
    return step >= 10 and digits[0] in "125" and set(digits[1:]) == {"0"}


def load_snapshots(run: runs.Run, last_step: int | None = None) -> dict[int, torch.Tensor]:
    """The fixed-noise images a run has saved (step -> uint8 N x 28 x 28), up to ``last_step``.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    path = run.path / SNAPSHOT_FILE
    if not path.is_file():
        return {}
    found = {int(k.removeprefix("step_")): v for k, v in load_file(str(path)).items()}
    return {s: found[s] for s in sorted(found) if last_step is None or s <= last_step}


@dataclass
class _State:
    """Everything the loop carries between steps and saves after each epoch."""

    gan: gan_models.GAN
    g_ema: gan_models.Generator | None
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        g, d = self.gan.generator, self.gan.discriminator
        return {"g": g, "d": d, **({"g_ema": self.g_ema} if self.g_ema is not None else {})}


def _start(cfg: gan_models.GANConfig, recipe: GANRecipe, run: runs.Run, generator: torch.Generator,
           resume: bool, device: torch.device) -> tuple[_State, int]:
    """Step 1: initialise G and D (DCGAN initialisation) on ``device``, their optimisers and the weight average
    of G; or restore all of them from ``run`` when resuming. Returns the state and the last finished epoch.
    A fresh start removes the run's old folder (rank 0 does; no rank reads it)."""
    gan = gan_models.GAN(cfg).to(device)
    g_ema = copy.deepcopy(gan.generator) if recipe.ema_decay else None
    optimizers = {"g": torch.optim.Adam(gan.generator.parameters(), lr=recipe.lr_g, betas=recipe.betas),
                  "d": torch.optim.Adam(gan.discriminator.parameters(), lr=recipe.lr_d, betas=recipe.betas)}
    state = _State(gan, g_ema, optimizers)
    if not resume:
        if distributed.is_main():
            shutil.rmtree(run.path, ignore_errors=True)
        return state, 0
    epoch, state.step, state.history = run.restore(state.modules, optimizers, generator)
    state.snapshots = load_snapshots(run, state.step)
    return state, epoch


def _replicas(gan: gan_models.GAN, device: torch.device) -> gan_models.GAN | DataParallelGAN:
    """``gan`` itself in one process; under torchrun its G and D in DDP (rank 0's weights on every rank)."""
    if distributed.world().size == 1:
        return gan
    return DataParallelGAN(gan, distributed.wrap(gan.generator, device), distributed.wrap(gan.discriminator, device))


def _log_epoch(epoch: int, recipe: GANRecipe, state: _State, n_batches: int) -> None:
    last = state.history[-n_batches:]
    means = {k: sum(r[k] for r in last) / len(last) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
    tqdm.write(f"epoch {epoch}/{recipe.epochs}: step {state.step}, L_D {means['loss_d']:.3f}, "
               f"L_G {means['loss_g']:.3f}, D(x) {means['d_real']:.2f}, D(G(z)) {means['d_fake']:.2f}, "
               f"{state.history[-1]['cpu_seconds']:.0f} CPU-s")


def train_gan(
    cfg: gan_models.GANConfig, recipe: GANRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
    resume: bool = False, device: torch.device | None = None,
) -> GANRun:
    """Train a GAN with the seven steps of §3.1.2 on one CPU thread; chapter 02 calls it after stepping by hand.

    One thread (``config.one_thread``): these small layers gain nothing from a second one, the result is
    deterministic, and CPU times compare across recipes (the ablation compares at equal CPU time).
    After every epoch the state goes to ``run`` (``resume=True`` continues from it and reproduces the
    uninterrupted run exactly); a NaN/inf loss or a D pinned at 0 or 1 for ``recipe.patience`` steps stops the
    run with ``runs.DivergenceError``, the last good epoch staying on disk.

    ``device``: default ``config.device()``; the models come back on the CPU. Under torchrun each rank trains on
    its slice of every global batch of ``recipe.batch_size`` with G and D in DDP, draws its own noise
    (``distributed.rank_seed``) and rank 0 alone writes and logs. BatchNorm is per rank: each rank normalises
    with the statistics of its own slice and keeps rank 0's running statistics (DDP's buffer broadcast);
    SyncBatchNorm does not run on the CPU's gloo backend. README, "More than one machine", measures the effect.
    """
    device = device or config.device()
    progress = progress and distributed.is_main()
    with config.one_thread(), distributed.process_group(device):
        config.seed_everything(seed)  # the same initial weights on every rank
        generator = torch.Generator().manual_seed(distributed.rank_seed(seed))
        images, labels = data.load("train")
        x_all = data.normalize(data.to_float(images[: recipe.train_limit]))
        labels = labels[: recipe.train_limit] if cfg.n_classes else None
        state, start_epoch = _start(cfg, recipe, run, generator, resume, device)
        nets = _replicas(state.gan, device)
        fixed_z = state.gan.noise(recipe.n_snapshot, torch.Generator().manual_seed(seed)).to(device)
        fixed_y = checkpoints.balanced_labels(recipe.n_snapshot, cfg.n_classes).to(device) if cfg.n_classes else None
        if state.step == 0:
            state.snapshots[0] = data.to_uint8(state.gan.render(fixed_z, fixed_y).cpu())
        monitor = runs.DivergenceMonitor(run, patience=recipe.patience)
        cpu_before, cpu_start = (state.history[-1]["cpu_seconds"] if state.history else 0.0), time.process_time()
        sampler = distributed.ShardSampler(len(x_all), recipe.batch_size, generator, seed, drop_last=True)
        n_batches = len(sampler)
        state.gan.train()
        # Step 7: repeat steps 2-6 (and monitor) until the budget of epochs is spent.
        for epoch in range(start_epoch + 1, recipe.epochs + 1):
            sampler.set_epoch(epoch)
            bar = tqdm(sampler, total=n_batches, desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress,
                       leave=False, mininterval=5.0)
            for idx in bar:  # Step 4: a real batch x (and its labels); this rank's slice of it under torchrun.
                x, y = x_all[idx].to(device), labels[idx].to(device) if labels is not None else None
                row = gan_step(nets, state.optimizers["g"], state.optimizers["d"], GAN_LOSSES[recipe.loss], x, y,
                               generator)
                row = distributed.mean_across_ranks(row)
                if state.g_ema is not None:
                    gan_models.ema_update(state.g_ema, state.gan.generator, recipe.ema_decay)
                state.step += 1
                # Step 7 (monitor): stop on a NaN/inf loss or a pinned D; the last good epoch stays on disk.
                monitor.check(state.step, {"L_D": row["loss_d"], "L_G": row["loss_g"]}, row["d_real"], row["d_fake"])
                row = {"step": state.step, **row,
                       "cpu_seconds": round(cpu_before + time.process_time() - cpu_start, 3)}
                state.history.append(row)
                if is_snapshot_step(state.step) or state.step == recipe.epochs * n_batches:
                    state.snapshots[state.step] = data.to_uint8(state.gan.render(fixed_z, fixed_y).cpu())
                bar.set_postfix(L_D=f"{row['loss_d']:.3f}", L_G=f"{row['loss_g']:.3f}", refresh=False)
            if distributed.is_main():
                files.write_tensors(run.path / SNAPSHOT_FILE,
                                    {f"step_{s:07d}": v for s, v in state.snapshots.items()})
            run.save(epoch, state.step, state.modules, state.optimizers, generator, state.history)
            if progress:
                _log_epoch(epoch, recipe, state, n_batches)
        g_ema = state.g_ema.cpu() if state.g_ema is not None else None
        return GANRun(state.gan.cpu().eval(), _finished_ema(g_ema, recipe, seed), state.history, state.snapshots)


def _finished_ema(g_ema: gan_models.Generator | None, recipe: GANRecipe, seed: int) -> gan_models.Generator | None:
    """The moving average of G with BN statistics recomputed for its own weights (field notes: stale statistics of
    the raw G make an EMA sample badly)."""
    if g_ema is None:
        return None
    ema = copy.deepcopy(g_ema)
    gan_models.recompute_batchnorm(ema, recipe.bn_batches, 4 * recipe.batch_size, torch.Generator().manual_seed(seed))
    return ema
