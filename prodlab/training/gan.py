"""Training a GAN with the seven steps of the article's §3.1.2 (taught in notebook 02).

:func:`gan_step` is steps 2-6 for one batch and nothing else, so a notebook can run it by hand and compare;
:func:`train_gan` runs it in the workbook's one training loop (``prodlab.training.loop``: device, threads, torchrun,
resume, divergence checks, history) with this family's two hooks: the moving average of G and snapshots of a fixed
noise batch (:class:`GANFamily`). On a data set with attributes (the colour catalogue) a conditional GAN trains on
the class and every attribute (:func:`training_labels`); the step is the same function.

The article names neither an architecture nor an optimiser. The defaults of :class:`GANRecipe` are its losses
(§4: ``L_D`` binary cross-entropy, the non-saturating ``L_G``) with DCGAN's Adam settings (Radford et al. 2016:
lr 2e-4, betas 0.5/0.999) and batches of 64: "the article's recipe" in this workbook means its losses with those
common settings, which are ours, not the article's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from prodlab import checkpoints, data, datasets, distributed, files, losses, runs
from prodlab.models import gan as gan_models
from prodlab.models.conditions import training_labels
from prodlab.training import loop

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
    aux_weight: float = 0.0  # AC-GAN: weight of D's class-head cross-entropy (needs GANConfig.aux_classifier)

    def __post_init__(self) -> None:
        if self.loss not in GAN_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(GAN_LOSSES)}, not {self.loss!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.aux_weight < 0:
            raise ValueError("epochs and aux_weight must be >= 0 and batch_size >= 1")


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


def judge(d: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
          aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits on ``images``, and the AC-GAN term ``aux_weight * CE(class head, class asked)`` from the same
    forward pass (a zero without ``aux_weight``, and D is called as before).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    if not aux_weight:
        return d(images, labels), torch.zeros((), device=images.device)
    logits, class_logits = d(images, labels, with_class=True)
    classes = labels if labels.ndim == 1 else labels[:, 0]
    return logits, aux_weight * F.cross_entropy(class_logits, classes)


def gan_step(
    gan: gan_models.GAN | DataParallelGAN, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
    loss_fns: tuple[LossFn, LossFn], x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator,
    aux_weight: float = 0.0,
) -> dict[str, float]:
    """§3.1.2 steps 2-6 on one real batch ``x`` (labels ``y`` for a conditional GAN: classes N, or N x (1 + K) with
    the attributes of a spec that has them, and the fakes' labels drawn the same way); chapter 02 runs it by hand.
    With ``aux_weight`` (AC-GAN, :func:`judge`) D also learns the class of real images, and G is asked for fakes
    that D's class head reads as the class they were drawn for.

    Returns what the loop logs: ``loss_d``, ``loss_g``, and the mean ``D(x)`` and ``D(G(z))`` before D's update.
    Deterministic given its inputs and the state of ``generator`` (the only source of randomness; a CPU
    generator, so every device gets the same noise).
    """
    loss_d_fn, loss_g_fn = loss_fns
    g, d, n = gan.generator, gan.discriminator, len(x)
    z = gan.noise(n, generator).to(x.device)  # Step 2: sample noise z ~ N(0, I).
    y_fake = gan_models.random_labels(gan.cfg, n, generator)  # every condition uniform (None: unconditional)
    y_fake = None if y_fake is None else y_fake.to(x.device)
    fake = g(z, y_fake)  # Step 3: generate fakes G(z).
    # Step 4 is the caller's: x is the real batch. Step 5: update D with L_D (fakes detached: this must not move G).
    (real_logits, class_loss_real), fake_logits = judge(d, x, y, aux_weight), d(fake.detach(), y_fake)
    loss_d = loss_d_fn(real_logits, fake_logits) + class_loss_real
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # Step 6: update G with L_G through the updated D (D's weights frozen: no gradient is wasted on them).
    d.requires_grad_(False)
    judged_fake, class_loss_fake = judge(d, fake, y_fake, aux_weight)
    loss_g = loss_g_fn(judged_fake) + class_loss_fake
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
    snapshots: dict[int, torch.Tensor]  # step -> uint8 images (N x H x W x C) of the fixed noise batch, by the raw G

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
    """The fixed-noise images a run has saved (step -> uint8 N x H x W x C), up to ``last_step``.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    path = run.path / SNAPSHOT_FILE
    if not path.is_file():
        return {}
    found = {int(k.removeprefix("step_")): v for k, v in load_file(str(path)).items()}
    return {s: found[s] for s in sorted(found) if last_step is None or s <= last_step}


class GANFamily(loop.Family):
    """The GAN as the training loop sees it: G and D with their Adam optimisers, :func:`gan_step` per batch, and two
    hooks, the moving average of G after every step and the fixed-noise snapshots (chapter 02).

    Step 1 of §3.1.2 (initialise G and D) is :meth:`build`: DCGAN initialisation, on the loop's device.
    """

    def __init__(self, cfg: gan_models.GANConfig, recipe: GANRecipe, dataset: str, seed: int) -> None:
        super().__init__()
        if recipe.aux_weight and not cfg.aux_classifier:
            raise ValueError("aux_weight trains D's class head: the config needs aux_classifier=True")
        self.cfg, self.recipe, self.dataset, self.seed = cfg, recipe, dataset, seed
        self.batch_size, self.epochs, self.patience = recipe.batch_size, recipe.epochs, recipe.patience
        self.snapshots: dict[int, torch.Tensor] = {}

    def build(self, device: torch.device) -> None:
        self.gan = gan_models.GAN(self.cfg).to(device)
        self.g_ema = copy.deepcopy(self.gan.generator) if self.recipe.ema_decay else None
        r = self.recipe
        self.optimizers = {"g": torch.optim.Adam(self.gan.generator.parameters(), lr=r.lr_g, betas=r.betas),
                           "d": torch.optim.Adam(self.gan.discriminator.parameters(), lr=r.lr_d, betas=r.betas)}
        self.modules = {"g": self.gan.generator, "d": self.gan.discriminator,
                        **({"g_ema": self.g_ema} if self.g_ema is not None else {})}
        self.nets = self.gan if distributed.world().size == 1 else DataParallelGAN(
            self.gan, distributed.wrap(self.gan.generator, device), distributed.wrap(self.gan.discriminator, device))
        self.fixed_z = self.gan.noise(r.n_snapshot, torch.Generator().manual_seed(self.seed)).to(device)
        self.fixed_y = (checkpoints.balanced_conditions(r.n_snapshot, self.cfg.condition_sizes, self.seed).to(device)
                        if self.cfg.conditional else None)

    def data(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step 4's source: the real images in [-1, 1] (and labels for a conditional GAN: :func:`training_labels`)."""
        images, labels = data.load("train", dataset=self.dataset)
        x = data.normalize(data.to_float(images[: self.recipe.train_limit]))
        if not self.cfg.conditional:
            return x, None
        return x, training_labels(self.cfg, labels, self.dataset)[: self.recipe.train_limit]

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: loop.State) -> dict[str, float]:
        return gan_step(self.nets, self.optimizers["g"], self.optimizers["d"], GAN_LOSSES[self.recipe.loss], x, y,
                        state.generator, self.recipe.aux_weight)

    def checks(self, row: dict[str, float]) -> tuple[dict[str, float], float | None, float | None]:
        """Step 7 (monitor): stop on a NaN/inf loss or a D pinned at 0 or 1."""
        return {"L_D": row["loss_d"], "L_G": row["loss_g"]}, row["d_real"], row["d_fake"]

    def _snapshot(self, step: int) -> None:
        self.snapshots[step] = data.to_uint8(self.gan.render(self.fixed_z, self.fixed_y).cpu())

    def begin(self, run: runs.Run, state: loop.State) -> None:
        self.snapshots = load_snapshots(run, state.step) if state.step else {}
        if state.step == 0:
            self._snapshot(0)

    def after_step(self, state: loop.State) -> None:
        if self.g_ema is not None:
            gan_models.ema_update(self.g_ema, self.gan.generator, self.recipe.ema_decay)
        if is_snapshot_step(state.step) or state.step == state.total_steps:
            self._snapshot(state.step)

    def save_extra(self, run: runs.Run, state: loop.State) -> None:
        files.write_tensors(run.path / SNAPSHOT_FILE, {f"step_{s:07d}": v for s, v in self.snapshots.items()})

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        return (f"L_D {means['loss_d']:.3f}, L_G {means['loss_g']:.3f}, D(x) {means['d_real']:.2f}, "
                f"D(G(z)) {means['d_fake']:.2f}")


def train_gan(
    cfg: gan_models.GANConfig, recipe: GANRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
    resume: bool = False, device: torch.device | None = None, dataset: str = datasets.DEFAULT,
    threads: int | None = None,
) -> GANRun:
    """Train a GAN with the seven steps of §3.1.2 on ``dataset``; chapter 02 calls it after stepping by hand.

    The loop (``prodlab.training.loop``) saves the state after every epoch in ``run`` (``resume=True`` continues
    and reproduces the uninterrupted run exactly); a NaN/inf loss or a D pinned at 0 or 1 for ``recipe.patience``
    steps stops the run with ``runs.DivergenceError``, the last good epoch staying on disk. ``threads``: CPU threads
    (default: all; 1 for timing comparisons). The models come back on the CPU.

    Under torchrun each rank trains on its slice of every global batch of ``recipe.batch_size`` with G and D in
    DDP, draws its own noise and rank 0 alone writes and logs. BatchNorm is per rank: each rank normalises with
    the statistics of its own slice and keeps rank 0's running statistics (DDP's buffer broadcast); SyncBatchNorm
    does not run on the CPU's gloo backend. README, "More than one machine", measures the effect.
    """
    data.check_fits(cfg.image, dataset)
    family = GANFamily(cfg, recipe, dataset, seed)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    g_ema = family.g_ema.cpu() if family.g_ema is not None else None
    return GANRun(family.gan.cpu().eval(), _finished_ema(g_ema, recipe, seed), state.steps, family.snapshots)


def _finished_ema(g_ema: gan_models.Generator | None, recipe: GANRecipe, seed: int) -> gan_models.Generator | None:
    """The moving average of G with BN statistics recomputed for its own weights (field notes: stale statistics of
    the raw G make an EMA sample badly)."""
    if g_ema is None:
        return None
    ema = copy.deepcopy(g_ema)
    gan_models.recompute_batchnorm(ema, recipe.bn_batches, 4 * recipe.batch_size, torch.Generator().manual_seed(seed))
    return ema
