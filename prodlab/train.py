"""Training loops, one recipe per registered model, and ``train_and_save`` behind ``python -m prodlab train NAME``.

Every recipe is seeded through ``config.seed_everything`` and evaluated deterministically (``model.eval()``,
``torch.no_grad()``, fixed batches), so re-running a recipe reproduces its checkpoint's metrics.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from prodlab import checkpoints, config, data, losses, metrics, runs
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models
from prodlab.models.classifier import ClassifierConfig, ProductClassifier

# ---------------------------------------------------------------- the product classifier (notebook 04)


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the shipped classifier is trained: AdamW with a one-cycle learning rate, light augmentation.

    12 epochs of 60,000 images take about 9 CPU-minutes (5 minutes on 2 idle cores).
    """

    epochs: int = 12
    batch_size: int = 128
    max_lr: float = 3e-3
    weight_decay: float = 0.05
    shift: int = 2  # random shift of up to this many pixels (pad + crop), as ``data.train_augmentation``
    flip: bool = True  # random horizontal flip, as ``data.train_augmentation``
    train_limit: int | None = None  # use only the first N training images (quick mode)


QUICK_CLASSIFIER_RECIPE = ClassifierRecipe(epochs=1, train_limit=4096)


def augment_batch(x: torch.Tensor, generator: torch.Generator, shift: int = 2, flip: bool = True) -> torch.Tensor:
    """``data.train_augmentation`` (random horizontal flip, random crop after padding) on a whole batch at once.

    Same distribution as applying the torchvision transform image by image, without a per-image Python loop:
    x is N x 1 x H x W; every image gets its own flip coin and its own shift in [-shift, shift]^2.
    """
    n, _, h, w = x.shape
    if flip:
        coin = torch.rand(n, generator=generator) < 0.5
        x = torch.where(coin[:, None, None, None], x.flip(-1), x)
    if shift > 0:
        padded = F.pad(x[:, 0], (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]
        x = padded[torch.arange(n)[:, None, None], rows, cols].unsqueeze(1)
    return x


def train_classifier(
    recipe: ClassifierRecipe | None = None, cfg: ClassifierConfig | None = None, seed: int = 0,
    progress: bool = True,
) -> tuple[ProductClassifier, list[dict[str, float]]]:
    """Train the product classifier; return it (eval mode) and its per-epoch history (loss, accuracies)."""
    recipe = recipe or ClassifierRecipe()
    generator = config.seed_everything(seed)
    images, labels = data.load("train")
    if recipe.train_limit is not None:
        images, labels = images[: recipe.train_limit], labels[: recipe.train_limit]
    x_all = data.to_float(images)
    test_images, test_labels = data.load("test")
    x_test = data.to_float(test_images)
    model = ProductClassifier(cfg).to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(x_all) // recipe.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.max_lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.max_lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    history: list[dict[str, float]] = []
    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress,
                   leave=False, mininterval=5.0)
        for step in bar:
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            xb = augment_batch(x_all[idx], generator, recipe.shift, recipe.flip)
            logits = model(xb.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.detach().argmax(1) == labels[idx]).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        test_acc = float((model.predict(x_test) == test_labels).double().mean())
        history.append({
            "epoch": epoch,
            "loss": round(total_loss / len(x_all), 5),
            "train_accuracy": round(correct / len(x_all), 5),
            "test_accuracy": round(test_acc, 5),
            "seconds": round(time.perf_counter() - start, 1),
        })
        if progress:
            h = history[-1]
            tqdm.write(f"epoch {epoch:2d}/{recipe.epochs}: loss {h['loss']:.4f}, train acc {h['train_accuracy']:.4f} "
                       f"(augmented), test acc {test_acc:.4f}, {h['seconds']:.1f} s")
    model = model.to(memory_format=torch.contiguous_format)
    return model.eval(), history


def _recipe_classifier(
    seed: int, progress: bool, resume: bool = False
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    if resume:
        raise checkpoints.ModelError("the classifier trains in a few minutes and has no --resume; train it without")
    recipe = QUICK_CLASSIFIER_RECIPE if config.quick() else ClassifierRecipe()
    model, history = train_classifier(recipe, seed=seed, progress=progress)
    report = metrics.classifier_report(model, "test")
    measured = {k: v for k, v in report.items() if k != "test_confusion"}
    extra = {"train_recipe": dataclasses.asdict(recipe), "history": history, "test_confusion": report["test_confusion"]}
    return model, measured, extra


# name -> function(seed, progress, resume) -> (model, measured metrics, extra JSON fields); later notebooks add theirs.
RECIPES: dict[str, Callable[[int, bool, bool], tuple[nn.Module, dict[str, Any], dict[str, Any]]]] = {
    "classifier": _recipe_classifier,
}


def train_and_save(
    name: str, seed: int = 0, command: str | None = None, directory: Path | None = None, progress: bool = True,
    resume: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Train model ``name`` with its recipe, measure it, write its checkpoint; return (metrics, JSON path).

    ``resume=True`` continues an interrupted run from its last finished epoch (``runs/NAME/state.pt``).
    """
    checkpoints.spec(name)
    if name not in RECIPES:
        raise checkpoints.ModelError(f"no training recipe for {name!r}; recipes: {', '.join(sorted(RECIPES))}")
    start, cpu_start = time.perf_counter(), time.process_time()
    model, metrics, extra = RECIPES[name](seed, progress, resume)
    seconds = time.perf_counter() - start
    extra = {**extra, "train_cpu_seconds": round(time.process_time() - cpu_start, 1)}
    _, meta_path = checkpoints.save(
        name, model, recipe=command or f"python -m prodlab train {name} --seed {seed}", seed=seed,
        train_seconds=seconds, metrics=metrics, extra=extra, directory=directory,
    )
    return metrics, meta_path


# ---------------------------------------------------------------- VAE (notebook 03)


@dataclass(frozen=True)
class VAERecipe:
    """How a VAE is trained (§3.2.2): Adam on ``recon + beta * KL`` summed over pixels and latents, batch mean.

    ``likelihood``: the article's ``"mse"`` (a Gaussian decoder with fixed variance) or ``"bce"`` (Bernoulli on
    [0, 1] intensities, what the shipped models and the PyTorch reference use). ``reduction="mean"`` reproduces
    the "sum versus mean" trap: the reconstruction term is also averaged over the 784 pixels, which is the same
    as training with ``beta * 784``.
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    likelihood: str = "bce"
    reduction: str = "sum"
    train_limit: int | None = None  # use only the first N training images (quick mode, live demos)
    eval_images: int = 1000  # first N test images, for the per-epoch numbers of the history


# The PyTorch examples VAE recipe (examples/vae/main.py): 10 epochs, batch 128, Adam 1e-3, BCE sum + KL.
REFERENCE_VAE_RECIPE = VAERecipe(epochs=10, batch_size=128, lr=1e-3, likelihood="bce")


class PosteriorCollapseWarning(UserWarning):
    """Most latent dimensions of a trained VAE carry no information (their KL to the prior is about 0)."""


def vae_objective(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  recipe: VAERecipe) -> losses.VAELoss:
    """§3.2.2 steps 5-7: reconstruction loss, KL to the prior, total ``recon + beta * KL``.

    Step 6 compares ``q(z|x)`` with the prior ``p(z) = N(0, I)``, not with "the true data distribution" as the
    article says: the true data distribution is unknown, which is why the ELBO exists at all.
    """
    x_out = torch.sigmoid(logits) if recipe.likelihood == "mse" else logits
    loss = losses.vae_loss(x_out, x, mu, logvar, beta=recipe.beta, likelihood=recipe.likelihood)
    if recipe.reduction == "sum":
        return loss
    if recipe.reduction == "mean":  # the trap: F.mse_loss / F.binary_cross_entropy with their default reduction
        recon = loss.recon / vae_models.NUM_PIXELS
        return losses.VAELoss(recon + recipe.beta * loss.kl, recon, loss.kl)
    raise ValueError(f"reduction must be 'sum' or 'mean', not {recipe.reduction!r}")


def check_posterior_collapse(model: vae_models.VAE, x: torch.Tensor,
                             threshold: float = vae_models.ACTIVE_KL) -> torch.Tensor:
    """KL per latent dimension on ``x``; warns (``PosteriorCollapseWarning``) when most dimensions are unused.

    A dimension is inactive when its average KL to the prior is below ``threshold`` nats: the encoder outputs
    the prior for every image and the decoder learns to ignore it (posterior collapse, Bowman et al. 2016).
    """
    kl = vae_models.kl_per_dimension(model, x)
    active = vae_models.active_units(kl, threshold)
    if active < model.latent_dim / 2:
        warnings.warn(
            f"posterior collapse: only {active} of {model.latent_dim} latent dimensions are active "
            f"(KL to the prior >= {threshold} nats); the decoder ignores the others. Lower beta, check the "
            "loss reduction (sum over pixels, not mean), or use a smaller latent.",
            PosteriorCollapseWarning, stacklevel=2,
        )
    return kl


def _vae_epoch_summary(model: vae_models.VAE, x_eval: torch.Tensor, epoch: int, sums: dict[str, float],
                       n: int, seconds: float, cpu_seconds: float) -> dict[str, float]:
    kl = vae_models.kl_per_dimension(model, x_eval)
    return {
        "epoch": epoch,
        **{k: round(v / n, 3) for k, v in sums.items()},
        "test_neg_elbo_bernoulli": round(float(vae_models.neg_elbo_bernoulli(model, x_eval).mean()), 3),
        "active_units": vae_models.active_units(kl),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }


def train_vae(
    cfg: vae_models.VAEConfig | vae_models.ReferenceVAEConfig, recipe: VAERecipe, run: runs.Run, seed: int = 0,
    progress: bool = True, resume: bool = False,
) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """Train a VAE with the eight steps of §3.2.2; return it (eval mode) and its per-epoch history.

    After every epoch the state goes to ``run`` (``runs/NAME/state.pt``); ``resume=True`` continues from it.
    A non-finite loss stops the run with ``runs.DivergenceError``. At the end, ``PosteriorCollapseWarning`` if
    most latent dimensions are unused.
    """
    generator = config.seed_everything(seed)
    images = data.load("train")[0]
    x_all = data.to_float(images[: recipe.train_limit] if recipe.train_limit else images)
    x_eval = data.to_float(data.load("test")[0][: recipe.eval_images])
    # Step 1: initialise the encoder and the decoder (and the optimiser).
    model = vae_models.build_vae(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    start_epoch, step, history = run.restore({"model": model}, {"optimizer": optimizer}, generator) if resume \
        else (0, 0, [])
    monitor = runs.DivergenceMonitor(run)
    steps_per_epoch = -(-len(x_all) // recipe.batch_size)
    # Step 8: repeat over the epochs.
    for epoch in range(start_epoch + 1, recipe.epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress,
                   leave=False, mininterval=5.0)
        for i in bar:
            x = x_all[order[i * recipe.batch_size : (i + 1) * recipe.batch_size]]
            mu, logvar = model.encode(x)  # Step 2: encode x to the mean and log-variance of q(z|x).
            z = model.reparameterize(mu, logvar, generator)  # Step 3: z = mu + sigma * eps.
            logits = model.decode_logits(z)  # Step 4: decode z.
            loss = vae_objective(logits, x, mu, logvar, recipe)  # Steps 5-6: reconstruction loss, KL to p(z).
            optimizer.zero_grad(set_to_none=True)  # Step 7: total loss, backpropagate, update.
            loss.total.backward()
            optimizer.step()
            step += 1
            values = {k: float(v.detach()) for k, v in loss._asdict().items()}
            monitor.check(step, values)
            for key, name in (("loss", "total"), ("recon", "recon"), ("kl", "kl")):
                sums[key] += values[name] * len(x)
            bar.set_postfix(loss=f"{values['total']:.1f}", refresh=False)
        history.append(_vae_epoch_summary(model, x_eval, epoch, sums, len(x_all), time.perf_counter() - start,
                                          time.process_time() - cpu_start))
        run.save(epoch, step, {"model": model}, {"optimizer": optimizer}, generator, history)
        if progress:
            h = history[-1]
            tqdm.write(f"epoch {epoch:2d}/{recipe.epochs}: loss {h['loss']:.2f} (recon {h['recon']:.2f}, "
                       f"KL {h['kl']:.2f}), test -ELBO {h['test_neg_elbo_bernoulli']:.2f}, "
                       f"{h['active_units']} active units, {h['seconds']:.1f} s")
    model.eval()
    check_posterior_collapse(model, x_eval)
    return model, history


SHIPPED_VAE_RECIPE = VAERecipe(epochs=20)
QUICK_VAE_RECIPE = VAERecipe(epochs=1, train_limit=4096)
QUICK_REFERENCE_VAE_RECIPE = dataclasses.replace(REFERENCE_VAE_RECIPE, epochs=1, train_limit=4096)


def measure_vae(name: str, model: vae_models.VAE, seed: int = 0) -> dict[str, Any]:
    """A VAE's test-set numbers: likelihoods (``vae_models.likelihood_report``) and the ruler's sample metrics."""
    x = data.to_float(data.load("test")[0])
    report: dict[str, Any] = vae_models.likelihood_report(model, x, seed=seed)
    images, _ = checkpoints.generate(name, config.budget(10_000, 2000), seed, model=model)
    report.update(metrics.generator_report(images, seed=seed))
    return report


def train_reference_vae(seed: int = 0, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Train the PyTorch example VAE with its own recipe and measure it on the test set (the yardstick of ``vae``)."""
    recipe = QUICK_REFERENCE_VAE_RECIPE if config.quick() else REFERENCE_VAE_RECIPE
    cfg = vae_models.ReferenceVAEConfig()
    cpu_start = time.process_time()
    model, history = train_vae(cfg, recipe, runs.Run("vae-reference"), seed, progress, resume)
    report = vae_models.likelihood_report(model, data.to_float(data.load("test")[0]), seed=seed)
    return {"model": "ReferenceMLPVAE (PyTorch examples/vae/main.py)", "config": dataclasses.asdict(cfg),
            "train_recipe": dataclasses.asdict(recipe), "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
            "epochs_cpu_seconds": round(sum(h["cpu_seconds"] for h in history), 1), "history": history,
            "metrics": report}


def _recipe_vae_named(name: str, seed: int, progress: bool, resume: bool) -> tuple[nn.Module, dict[str, Any],
                                                                                   dict[str, Any]]:
    recipe = QUICK_VAE_RECIPE if config.quick() else SHIPPED_VAE_RECIPE
    model, history = train_vae(checkpoints.spec(name).config, recipe, runs.Run(name), seed, progress, resume)
    measured = measure_vae(name, model, seed)
    x = data.to_float(data.load("test")[0])
    extra = {"train_recipe": dataclasses.asdict(recipe), "history": history,
             "epochs_cpu_seconds": round(sum(h["cpu_seconds"] for h in history), 1),  # all epochs, across resumes
             "kl_per_dimension": [round(v, 4) for v in vae_models.kl_per_dimension(model, x).tolist()]}
    return model, measured, extra


def _recipe_vae(seed: int, progress: bool, resume: bool = False) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``vae``: the 16-d convolutional VAE, and the PyTorch reference VAE trained and measured beside it."""
    model, measured, extra = _recipe_vae_named("vae", seed, progress, resume)
    reference = train_reference_vae(seed, progress, resume)
    ours, theirs = measured["neg_elbo_bernoulli"], reference["metrics"]["neg_elbo_bernoulli"]
    extra["reference"] = reference
    extra["acceptance"] = {"neg_elbo_bernoulli": ours, "reference_neg_elbo_bernoulli": theirs,
                           "beats_reference": ours < theirs}
    return model, measured, extra


def _recipe_vae2d(seed: int, progress: bool, resume: bool = False) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``vae2d``: the same VAE with a 2-d latent, for the manifold and the latent map of notebook 03."""
    return _recipe_vae_named("vae2d", seed, progress, resume)


RECIPES["vae"] = _recipe_vae
RECIPES["vae2d"] = _recipe_vae2d


# Small VAEs trained live in notebook 03 (beta sweep, the sum-versus-mean trap): a subset, a few epochs.
SMALL_VAE_CONFIG = vae_models.VAEConfig(latent_dim=16)
BETA_SWEEP = (0.1, 0.5, 1.0, 4.0, 16.0, 784.0)


def small_vae_recipe(beta: float = 1.0, reduction: str = "sum", likelihood: str = "bce") -> VAERecipe:
    """2 epochs on 10,000 training images (quick mode: 1 epoch on 2,000): seconds, not minutes."""
    return VAERecipe(epochs=config.budget(2, 1), train_limit=config.budget(10_000, 2_000), beta=beta,
                     reduction=reduction, likelihood=likelihood)


def train_small_vae(beta: float = 1.0, reduction: str = "sum", likelihood: str = "bce", seed: int = 0,
                    progress: bool = False) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """Train a small VAE (``SMALL_VAE_CONFIG``, ``small_vae_recipe``); its state goes to ``runs/vae-small-...``."""
    recipe = small_vae_recipe(beta, reduction, likelihood)
    run = runs.Run(f"vae-small-{likelihood}-{reduction}-beta{beta:g}")
    return train_vae(SMALL_VAE_CONFIG, recipe, run, seed, progress)


def beta_sweep(betas: tuple[float, ...] = BETA_SWEEP, n_test: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Train one small VAE per ``beta`` and measure rate and distortion on the first ``n_test`` test images.

    Each row: beta, rate R (KL, nats), distortion D (Bernoulli, nats), -ELBO = D + R, PSNR, active units and
    the trained ``model`` itself (for its reconstructions and samples).
    """
    x = data.to_float(data.load("test")[0][:n_test])
    rows = []
    for beta in betas:
        model, _ = train_small_vae(beta, seed=seed)
        distortion, rate = vae_models.elbo_terms(model, x, seed)
        rows.append({"beta": beta, "rate": float(rate.mean()), "distortion": float(distortion.mean()),
                     "neg_elbo": float((distortion + rate).mean()),
                     "recon_psnr": float(vae_models.recon_psnr(model, x).mean()),
                     "active_units": vae_models.active_units(vae_models.kl_per_dimension(model, x)), "model": model})
    return rows


# ---------------------------------------------------------------- GAN (notebook 02)


GANLosses = tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]

# A recipe's ``loss`` names a pair (discriminator loss, generator loss) of ``prodlab.losses``, all on logits.
GAN_LOSSES: dict[str, GANLosses] = {
    "bce": (losses.discriminator_loss, losses.generator_loss_nonsaturating),  # the article's L_D and L_G (§4)
    "bce-saturating": (losses.discriminator_loss, losses.generator_loss_saturating),  # the minimax L_G of §2.2
    "hinge": (losses.discriminator_loss_hinge, losses.generator_loss_hinge),  # Lim & Ye 2017; not in the article
}
SNAPSHOT_FILE = "snapshots.safetensors"


@dataclass(frozen=True)
class GANRecipe:
    """How a GAN is trained (§3.1.2). The defaults are the article's recipe: its ``L_D`` (binary cross-entropy) and
    non-saturating ``L_G`` (§4), with DCGAN's Adam settings (lr 2e-4, betas 0.5/0.999) for both networks.

    The improvements are switches: ``loss="hinge"``; two time-scale learning rates (``lr_d > lr_g``, Heusel et al.
    2017); ``ema_decay > 0``: an exponential moving average of G's weights, which watches training without
    changing it (so the raw G of the same run *is* the article's recipe), its BN statistics recomputed at the end.
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


@dataclass
class GANRun:
    """What :func:`train_gan` returns."""

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
    """A copy of ``gan`` whose generator has the weights and BN statistics of ``g``."""
    out = copy.deepcopy(gan)
    out.generator.load_state_dict(g.state_dict())
    return out.eval()


def is_snapshot_step(step: int) -> bool:
    """Steps 10, 20, 50, 100, 200, 500, 1000, ...: evenly spaced on a log axis, where a GAN's looks change."""
    digits = str(step)
    return step >= 10 and digits[0] in "125" and set(digits[1:]) == {"0"}


def _uint8(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255.0).round().to(torch.uint8).reshape(-1, 28, 28)


def _save_snapshots(run: runs.Run, snapshots: dict[int, torch.Tensor]) -> None:
    path = run.path / SNAPSHOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"step_{s:07d}": v.contiguous() for s, v in snapshots.items()}, str(path.with_suffix(".tmp")))
    os.replace(path.with_suffix(".tmp"), path)


def load_snapshots(run: runs.Run, last_step: int | None = None) -> dict[int, torch.Tensor]:
    """The fixed-noise images a run has saved (step -> uint8 N x 28 x 28), up to ``last_step``."""
    path = run.path / SNAPSHOT_FILE
    if not path.is_file():
        return {}
    found = {int(k.removeprefix("step_")): v for k, v in load_file(str(path)).items()}
    return {s: found[s] for s in sorted(found) if last_step is None or s <= last_step}


def train_gan(
    cfg: gan_models.GANConfig, recipe: GANRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
    resume: bool = False,
) -> GANRun:
    """Train a GAN on one CPU thread (``config.one_thread``): these small layers gain nothing from a second one,
    and CPU times then compare across recipes and machines' loads (the ablation compares at equal CPU time).
    See :func:`_train_gan` for the steps."""
    with config.one_thread():
        return _train_gan(cfg, recipe, run, seed, progress, resume)


def _train_gan(
    cfg: gan_models.GANConfig, recipe: GANRecipe, run: runs.Run, seed: int, progress: bool, resume: bool,
) -> GANRun:
    """Train a GAN with the seven steps of §3.1.2 and return it with its per-step history and snapshots.

    After every epoch the state (G, D, the EMA, both optimisers, the random streams, the history) goes to
    ``run`` and the fixed-noise snapshots to ``run.path / SNAPSHOT_FILE``; ``resume=True`` continues from them
    (an interrupted run loses at most one epoch and reproduces the uninterrupted one exactly), ``resume=False``
    starts over. A NaN/inf loss, or D pinned at 0 or 1 for ``recipe.patience`` steps, stops the run with
    ``runs.DivergenceError``; the last good epoch stays in ``run.state_path``.
    """
    loss_d_fn, loss_g_fn = GAN_LOSSES[recipe.loss]
    generator = config.seed_everything(seed)
    images, labels = data.load("train")
    x_all = data.normalize(data.to_float(images[: recipe.train_limit]))
    labels = labels[: recipe.train_limit] if cfg.n_classes else None
    # Step 1: initialise G and D (DCGAN initialisation), their optimisers and the weight average of G.
    gan = gan_models.GAN(cfg)
    g, d = gan.generator, gan.discriminator
    g_ema = copy.deepcopy(g) if recipe.ema_decay else None
    opt_g = torch.optim.Adam(g.parameters(), lr=recipe.lr_g, betas=recipe.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=recipe.lr_d, betas=recipe.betas)
    modules = {"g": g, "d": d, **({"g_ema": g_ema} if g_ema is not None else {})}
    optimizers = {"g": opt_g, "d": opt_d}
    if not resume:
        shutil.rmtree(run.path, ignore_errors=True)
    start_epoch, step, history = run.restore(modules, optimizers, generator)
    snapshots = load_snapshots(run, step)
    fixed_z = gan.noise(recipe.n_snapshot, torch.Generator().manual_seed(seed))
    fixed_y = checkpoints.balanced_labels(recipe.n_snapshot, cfg.n_classes) if cfg.n_classes else None
    if step == 0:
        snapshots[0] = _uint8(gan.render(fixed_z, fixed_y))
    monitor = runs.DivergenceMonitor(run, patience=recipe.patience)
    cpu_before, cpu_start = (history[-1]["cpu_seconds"] if history else 0.0), time.process_time()
    bs, n_batches = recipe.batch_size, len(x_all) // recipe.batch_size
    g.train()
    d.train()
    # Step 7: repeat steps 2-6 (and monitor) until the budget of epochs is spent.
    for epoch in range(start_epoch + 1, recipe.epochs + 1):
        order = torch.randperm(len(x_all), generator=generator)
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress, leave=False,
                   mininterval=5.0)
        for i in bar:
            z = gan.noise(bs, generator)  # Step 2: sample noise z ~ N(0, I).
            y_fake = torch.randint(0, cfg.n_classes, (bs,), generator=generator) if cfg.n_classes else None
            fake = g(z, y_fake)  # Step 3: generate fakes G(z).
            idx = order[i * bs : (i + 1) * bs]
            x, y = x_all[idx], (labels[idx] if labels is not None else None)  # Step 4: sample a real batch x.
            # Step 5: update D with L_D (the fakes detached: this step must not move G).
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
            if g_ema is not None:
                gan_models.ema_update(g_ema, g, recipe.ema_decay)
            step += 1
            row = {"step": step, "loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                   "d_real": float(torch.sigmoid(real_logits.detach()).mean()),
                   "d_fake": float(torch.sigmoid(fake_logits.detach()).mean())}
            # Step 7 (monitor): stop on a NaN/inf loss or a pinned D; the last good epoch stays on disk.
            monitor.check(step, {"L_D": row["loss_d"], "L_G": row["loss_g"]}, row["d_real"], row["d_fake"])
            row["cpu_seconds"] = round(cpu_before + time.process_time() - cpu_start, 3)
            history.append(row)
            if is_snapshot_step(step) or step == recipe.epochs * n_batches:
                snapshots[step] = _uint8(gan.render(fixed_z, fixed_y))
            bar.set_postfix(L_D=f"{row['loss_d']:.3f}", L_G=f"{row['loss_g']:.3f}", refresh=False)
        _save_snapshots(run, snapshots)
        run.save(epoch, step, modules, optimizers, generator, history)
        if progress:
            last = history[-n_batches:]
            tqdm.write(f"epoch {epoch}/{recipe.epochs}: step {step}, L_D {_mean(last, 'loss_d'):.3f}, "
                       f"L_G {_mean(last, 'loss_g'):.3f}, D(x) {_mean(last, 'd_real'):.2f}, "
                       f"D(G(z)) {_mean(last, 'd_fake'):.2f}, {history[-1]['cpu_seconds']:.0f} CPU-s")
    ema = None
    if g_ema is not None:
        ema = copy.deepcopy(g_ema)
        gan_models.recompute_batchnorm(ema, recipe.bn_batches, 4 * bs, torch.Generator().manual_seed(seed))
    return GANRun(gan.eval(), ema, history, snapshots)


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / max(len(rows), 1)


def summarise_history(history: list[dict[str, float]], window: int = 50) -> list[dict[str, float]]:
    """Means of the per-step history over windows of ``window`` steps (for a checkpoint's JSON and its plots)."""
    rows = []
    for start in range(0, len(history), window):
        chunk = history[start : start + window]
        rows.append({"step": chunk[-1]["step"], "cpu_seconds": round(chunk[-1]["cpu_seconds"], 1),
                     **{k: round(_mean(chunk, k), 4) for k in ("loss_d", "loss_g", "d_real", "d_fake")}})
    return rows


def encode_snapshots(snapshots: dict[int, torch.Tensor]) -> dict[str, Any]:
    """Fixed-noise snapshots as JSON: steps and, per step, the uint8 pixels in base64 (about 1 kB per image)."""
    return {"steps": list(snapshots), "shape": list(next(iter(snapshots.values())).shape),
            "images_base64": [base64.b64encode(v.numpy().tobytes()).decode("ascii") for v in snapshots.values()]}


def decode_snapshots(encoded: dict[str, Any]) -> dict[int, torch.Tensor]:
    """The inverse of :func:`encode_snapshots`: step -> uint8 images N x 28 x 28."""
    shape = tuple(encoded["shape"])
    return {step: torch.frombuffer(bytearray(base64.b64decode(b64)), dtype=torch.uint8).reshape(shape)
            for step, b64 in zip(encoded["steps"], encoded["images_base64"], strict=True)}


def gan_report(name: str, gan: gan_models.GAN, n: int, seed: int = 0) -> dict[str, Any]:
    """The ruler's metrics of ``n`` samples of ``gan``, drawn as ``python -m prodlab evaluate NAME`` draws them."""
    images, labels = checkpoints.generate(name, n, seed, model=gan)
    return metrics.generator_report(images, labels, seed=seed)


def ema_variants(result: GANRun) -> dict[str, gan_models.GAN]:
    """The generators one run yields at the same CPU time (the EMA only watches training).

    ``"raw"``: the trained G, i.e. the recipe without EMA; with EMA also ``"ema_stale_bn"``: the averaged weights
    with the BN statistics of the raw G (the trap: statistics of other weights) and ``"ema"``: the averaged weights
    with recomputed statistics (what is shipped).
    """
    variants = {"raw": result.gan}
    if result.ema is not None:
        stale = with_generator(result.gan, result.ema)
        raw_buffers = dict(result.gan.generator.named_buffers())
        for key, buffer in stale.generator.named_buffers():
            buffer.copy_(raw_buffers[key])
        variants.update(ema_stale_bn=stale, ema=result.shipped())
    return variants


def describe_recipe(recipe: GANRecipe, cfg: gan_models.GANConfig) -> str:
    """A short human description of a recipe, for the rows of the ablation table."""
    loss = {"bce": "BCE + non-saturating L_G", "bce-saturating": "BCE + saturating L_G", "hinge": "hinge"}
    lr = f"lr {recipe.lr_g:g}" if recipe.lr_g == recipe.lr_d else f"TTUR lr G {recipe.lr_g:g} / D {recipe.lr_d:g}"
    batch = [] if recipe.batch_size == 64 else [f"batch {recipe.batch_size}"]
    return ", ".join([loss[recipe.loss], lr, *batch, *(["spectral norm in D"] if cfg.spectral_norm else [])])


VARIANT_LABELS = {"raw": "", "ema_stale_bn": " + EMA of G, BN statistics of G (not recomputed)",
                  "ema": " + EMA of G, BN statistics recomputed"}


def ablation_rows(name: str, result: GANRun, recipe: GANRecipe, n: int, seed: int = 0,
                  reports: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per generator of the run (see :func:`ema_variants`): recipe, CPU minutes, the ruler's metrics.

    ``reports`` (variant -> ``gan_report``) are measured here unless given.
    """
    reports = reports or {key: gan_report(name, gan, n, seed) for key, gan in ema_variants(result).items()}
    rows = []
    cfg = result.gan.cfg
    for key, m in reports.items():
        rows.append({
            "recipe": describe_recipe(recipe, cfg) + VARIANT_LABELS[key], "variant": key, "model": name,
            "cpu_minutes": round(result.cpu_seconds / 60.0, 1), "steps": int(result.history[-1]["step"]),
            "n": n, **{k: m[k] for k in ("fid", "kid", "precision", "recall", "coverage_tv", "classes_covered")},
            "class_fidelity": m.get("class_fidelity"),
        })
    return rows


# The shipped recipes, each measured against the article's recipe in notebook 02's ablation. The dcgan trains with
# batches of 16 instead of 64: on a CPU the cost of a step grows with the batch, so four times as many (noisier)
# updates fit in the same time, and they buy a lower FID at every budget measured (1 and 2 epochs, then 6).
SHIPPED_GAN_RECIPES = {"dcgan": GANRecipe(epochs=6, batch_size=16, ema_decay=0.999),
                       "cdcgan": GANRecipe(epochs=8, ema_decay=0.999)}
# The article's recipe trained as a separate run where the shipped recipe changes training itself (not just an EMA
# watching it): the baseline of the acceptance ratio, for as many epochs (so at least as much CPU time).
ARTICLE_BASELINES = {"dcgan": GANRecipe(epochs=6, ema_decay=0.999)}
QUICK_GAN_RECIPE = GANRecipe(epochs=1, train_limit=2048, ema_decay=0.9, bn_batches=4)


def _measured_run(name: str, recipe: GANRecipe, run: runs.Run, seed: int, progress: bool, resume: bool,
                  n: int) -> tuple[GANRun, dict[str, gan_models.GAN], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    result = train_gan(checkpoints.spec(name).config, recipe, run, seed, progress, resume)
    variants = ema_variants(result)
    reports = {key: gan_report(name, gan, n, seed) for key, gan in variants.items()}
    return result, variants, reports, ablation_rows(name, result, recipe, n, seed, reports)


def _recipe_gan(name: str, seed: int, progress: bool, resume: bool) -> tuple[nn.Module, dict[str, Any],
                                                                            dict[str, Any]]:
    """Train ``name`` with its shipped recipe and measure every generator of the run (raw G, EMA variants).

    An improvement is kept only if it measured better: the shipped generator is the raw G or the EMA (with
    recomputed BN statistics), whichever has the lower FID; the JSON says which (``shipped_variant``). The baseline
    of the acceptance ratio is the article's recipe: the raw G of the same run, or (``ARTICLE_BASELINES``) a separate
    run of the article's recipe, trained and measured here too.
    """
    recipe = QUICK_GAN_RECIPE if config.quick() else SHIPPED_GAN_RECIPES[name]
    run = runs.Run(f"{name}-quick" if config.quick() else name)  # a quick run never clobbers a real one
    n = config.budget(10_000, 1000)
    result, variants, reports, rows = _measured_run(name, recipe, run, seed, progress, resume, n)
    best = min((k for k in ("raw", "ema") if k in reports), key=lambda k: reports[k]["fid"])
    by_variant = {r["variant"]: r for r in rows}
    article = None if config.quick() else ARTICLE_BASELINES.get(name)
    if article is None:
        baseline = {**by_variant["raw"], "note": "the article's recipe: the raw G of this same run (the EMA only "
                    "watches training), hence the same CPU time"}
    else:
        base_rows = _measured_run(name, article, runs.Run(f"{name}-article"), seed, progress, resume, n)[3]
        baseline = {**base_rows[0], "note": "the article's recipe, trained as a separate run for as many epochs"}
        rows = base_rows + rows
    ratio = reports[best]["fid"] / baseline["fid"]
    extra = {
        "train_recipe": dataclasses.asdict(recipe), "train_steps": by_variant["raw"]["steps"],
        "train_cpu_seconds_steps": round(result.cpu_seconds, 1), "train_torch_threads": 1,  # train_gan: one thread
        "shipped_variant": best,
        "baseline": baseline,
        "ablation": rows,
        "acceptance": {"fid": reports[best]["fid"], "cpu_minutes": by_variant["raw"]["cpu_minutes"],
                       "baseline_fid": baseline["fid"], "baseline_cpu_minutes": baseline["cpu_minutes"],
                       "fid_ratio": round(ratio, 4), "fid_ratio_at_most_0.75": ratio <= 0.75},
        "history": summarise_history(result.history),
        "snapshots": encode_snapshots(result.snapshots),
    }
    return variants[best], reports[best], extra


def _recipe_dcgan(seed: int, progress: bool, resume: bool = False) -> tuple[nn.Module, dict[str, Any],
                                                                           dict[str, Any]]:
    """``dcgan``: the article's losses and optimiser (§3.1.2) with batches of 16 and an EMA of G, measured against
    the article's recipe (batches of 64) trained as a separate run."""
    return _recipe_gan("dcgan", seed, progress, resume)


def _recipe_cdcgan(seed: int, progress: bool, resume: bool = False) -> tuple[nn.Module, dict[str, Any],
                                                                             dict[str, Any]]:
    """``cdcgan``: the class-conditional DCGAN, same recipe: ask for "a sneaker"."""
    return _recipe_gan("cdcgan", seed, progress, resume)


RECIPES["dcgan"] = _recipe_dcgan
RECIPES["cdcgan"] = _recipe_cdcgan


# Recipes compared at an equal budget of steps by ``python -m prodlab bench gan`` (the ablation of notebook 02).
# Every variant keeps an EMA of G, which only watches training: each run also gives its own no-EMA row.
BENCH_GAN_VARIANTS: dict[str, tuple[gan_models.GANConfig, GANRecipe]] = {
    "article": (gan_models.GANConfig(), GANRecipe(epochs=2, ema_decay=0.999)),
    "hinge-sn-ttur": (gan_models.GANConfig(spectral_norm=True),
                      GANRecipe(epochs=2, loss="hinge", lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9), ema_decay=0.999)),
}
QUICK_BENCH_GAN_VARIANTS = {"article": (gan_models.GANConfig(), QUICK_GAN_RECIPE)}


def quick_fid(name: str, gan: gan_models.GAN, n: int, seed: int = 0) -> float:
    """FID alone (no KID, precision or recall) of ``n`` samples against the test set: the cheap progress check."""
    r = metrics.ruler()
    return metrics.fid(r.reference("test"), r.features(checkpoints.generate(name, n, seed, model=gan)[0]))


def bench_gan(
    variants: dict[str, tuple[gan_models.GANConfig, GANRecipe]] | None = None, seed: int = 0, n_fid: int = 2000,
    n_final: int = 10_000, progress: bool = True, out_path: Path | None = None,
) -> dict[str, Any]:
    """Train each variant from scratch one epoch at a time (``resume``), measuring FID after every epoch.

    Returns (and writes to ``out_path`` as JSON, if given) per variant the throughput (images per wall second and
    per CPU second) and the time-to-FID curve (raw G and EMA G, ``n_fid`` samples), and the ablation rows of every
    final generator (``n_final`` samples). Resuming epoch by epoch trains exactly what one uninterrupted run of the
    same recipe trains.
    """
    variants = variants or (QUICK_BENCH_GAN_VARIANTS if config.quick() else BENCH_GAN_VARIANTS)
    ruler_sha = checkpoints.read_meta("classifier").get("weights_sha256")
    out: dict[str, Any] = {"command": "python -m prodlab bench gan", "seed": seed, "quick_mode": config.quick(),
                           "n_fid": n_fid, "n_final": n_final, "ruler_sha256": ruler_sha,
                           "machine": checkpoints.machine(), "variants": {}, "ablation": []}
    for key, (cfg, recipe) in variants.items():
        name = "cdcgan" if cfg.n_classes else "dcgan"
        run, curve, wall = runs.Run(f"bench-gan-{key}{'-quick' if config.quick() else ''}"), [], 0.0
        for epoch in range(recipe.epochs + 1):
            start = time.perf_counter()
            result = train_gan(cfg, dataclasses.replace(recipe, epochs=epoch), run, seed, progress, resume=epoch > 0)
            wall += time.perf_counter() - start
            fids = {k: quick_fid(name, g, n_fid, seed) for k, g in ema_variants(result).items() if k != "ema_stale_bn"}
            steps = int(result.history[-1]["step"]) if result.history else 0
            curve.append({"epoch": epoch, "steps": steps, "cpu_seconds": round(result.cpu_seconds, 1),
                          "wall_seconds": round(wall, 1), **{f"fid_{k}": round(v, 3) for k, v in fids.items()}})
            if progress:
                tqdm.write(f"bench {key}: {curve[-1]}")
        images = steps * recipe.batch_size
        out["variants"][key] = {
            "recipe": describe_recipe(recipe, cfg), "config": dataclasses.asdict(cfg),
            "train_recipe": dataclasses.asdict(recipe), "images_per_second": round(images / max(wall, 1e-9), 1),
            "images_per_cpu_second": round(images / max(result.cpu_seconds, 1e-9), 1), "time_to_fid": curve,
        }
        out["ablation"] += [{**row, "bench_variant": key} for row in ablation_rows(name, result, recipe, n_final, seed)]
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


BENCH_GAN_FILE = config.CHECKPOINT_DIR / "bench_gan.json"  # what ``python -m prodlab bench gan`` writes (full mode)


def gan_ablation(names: tuple[str, ...] = ("dcgan", "cdcgan"), bench: Path | None = BENCH_GAN_FILE,
                 directory: Path | None = None) -> list[dict[str, Any]]:
    """The measured ablation rows: those of each shipped checkpoint's JSON (its own run: the article's recipe
    without and with the EMA), then those of ``python -m prodlab bench gan`` (other recipes, equal budgets).

    Rows of missing files are left out (a fresh clone before training has none); nothing is re-measured here.
    """
    rows = []
    for name in names:
        if checkpoints.exists(name, directory):
            meta = checkpoints.read_meta(name, directory)
            rows += [{**r, "source": f"{name}.json (python -m prodlab train {name})"} for r in meta["ablation"]]
    if bench is not None and Path(bench).is_file():
        rows += [{**r, "source": f"{Path(bench).name} (python -m prodlab bench gan)"}
                 for r in json.loads(Path(bench).read_text(encoding="utf-8"))["ablation"]]
    return rows


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    """The ablation rows as a Markdown table: recipe, CPU minutes, FID, KID, precision, recall, class fidelity."""
    lines = ["| model | recipe | steps | CPU min | FID | KID | precision | recall | class fidelity |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fidelity = "–" if r["class_fidelity"] is None else f"{r['class_fidelity']:.3f}"
        lines.append(f"| {r['model']} | {r['recipe']} | {r['steps']:,} | {r['cpu_minutes']:.1f} | {r['fid']:.2f} | "
                     f"{r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | {fidelity} |")
    return "\n".join(lines)
