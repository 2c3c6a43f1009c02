"""Training a VAE with the eight steps of the article's §3.2.2 (taught in chapter 03).

:func:`vae_step` is steps 2-7 for one batch, so chapter 03 can run it by hand and compare; :func:`train_vae` is
step 1 and step 8 around it, with resume, per-epoch measurements and the divergence and posterior-collapse checks
in small helpers. The article names no architecture, optimiser or batch size: Adam 1e-3 and batches of 128 are
the PyTorch example's settings, ours. It trains on ``config.device()`` and, under torchrun, in several processes
with DDP (``prodlab.distributed``; README, "More than one machine").
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from prodlab import config, data, distributed, losses, runs
from prodlab.models import vae as vae_models


@dataclass(frozen=True)
class VAERecipe:
    """How a VAE is trained (§3.2.2, chapter 03): Adam on ``recon + beta * KL`` summed over pixels and latents,
    averaged over the batch.

    ``likelihood``: the article's ``"mse"`` (a Gaussian decoder with fixed variance) or ``"bce"`` (a Bernoulli
    cross-entropy on [0, 1] intensities, what the shipped models and the PyTorch reference use; not a normalised
    likelihood for grey levels, see chapter 01). ``reduction="mean"`` reproduces the "sum versus mean" trap: the
    reconstruction term is also averaged over the 784 pixels, which is the same as training with ``beta * 784``.
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    likelihood: str = "bce"
    reduction: str = "sum"
    train_limit: int | None = None  # use only the first N training images (quick mode, live demos)
    eval_images: int = 1000  # first N test images, for the per-epoch numbers of the history

    def __post_init__(self) -> None:
        if self.likelihood not in ("bce", "mse") or self.reduction not in ("sum", "mean"):
            raise ValueError("likelihood must be 'bce' or 'mse' and reduction 'sum' or 'mean'")


class PosteriorCollapseWarning(UserWarning):
    """Most latent dimensions of a trained VAE carry no information (their KL to the prior is about 0).

    Chapter 03 (notebooks/03_vae.ipynb).
    """


def vae_objective(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  recipe: VAERecipe) -> losses.VAELoss:
    """§3.2.2 steps 5-7: reconstruction loss, KL to the prior, total ``recon + beta * KL`` (chapter 03).

    Step 6 compares ``q(z|x)`` with the prior ``p(z) = N(0, I)``, not with "the true data distribution" as the
    article says: the true data distribution is unknown, which is why the ELBO exists at all.
    """
    x_out = torch.sigmoid(logits) if recipe.likelihood == "mse" else logits
    loss = losses.vae_loss(x_out, x, mu, logvar, beta=recipe.beta, likelihood=recipe.likelihood)
    if recipe.reduction == "sum":
        return loss
    recon = loss.recon / vae_models.NUM_PIXELS  # the trap: F.mse_loss / F.binary_cross_entropy's default reduction
    return losses.VAELoss(recon + recipe.beta * loss.kl, recon, loss.kl)


class _Halves(nn.Module):
    """A VAE whose ``forward`` runs one of its halves by name, so that DDP (which acts in ``forward``) sees
    both the encoder and the decoder pass of :func:`vae_step`."""

    def __init__(self, vae: vae_models.VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, half: str, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(x) if half == "encode" else self.vae.decode_logits(x)


class DataParallelVAE:
    """The VAE as :func:`vae_step` sees it under torchrun: both halves run through one DDP module, and the one
    ``backward`` of the step averages every weight's gradient across ranks (chapter 03)."""

    def __init__(self, vae: vae_models.VAE, device: torch.device) -> None:
        self.vae, self.ddp = vae, distributed.wrap(_Halves(vae), device)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ddp("encode", x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.ddp("decode", z)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        return self.vae.reparameterize(mu, logvar, generator)


def vae_step(model: vae_models.VAE | DataParallelVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor,
             recipe: VAERecipe, generator: torch.Generator) -> dict[str, float]:
    """§3.2.2 steps 2-7 on one batch (chapter 03 runs them by hand): encode, sample z = mu + sigma * eps, decode,
    reconstruction loss, KL to the prior, update. Returns ``total``, ``recon`` and ``kl`` (batch means, nats).

    Deterministic given its inputs and the state of ``generator`` (which draws eps, on the device of ``x``).
    """
    mu, logvar = model.encode(x)  # Step 2: encode x to the mean and log-variance of q(z|x).
    z = model.reparameterize(mu, logvar, generator)  # Step 3: sample z ~ q(z|x) (as z = mu + sigma * eps).
    logits = model.decode_logits(z)  # Step 4: decode z.
    loss = vae_objective(logits, x, mu, logvar, recipe)  # Steps 5-6: reconstruction loss, KL to p(z).
    optimizer.zero_grad(set_to_none=True)  # Step 7: total loss, backpropagate, update.
    loss.total.backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in loss._asdict().items()}


def check_posterior_collapse(model: vae_models.VAE, x: torch.Tensor,
                             threshold: float = vae_models.ACTIVE_KL) -> torch.Tensor:
    """KL per latent dimension on ``x``; warns (``PosteriorCollapseWarning``) when most dimensions are unused.

    A dimension is inactive when its average KL to the prior is below ``threshold`` nats: the encoder outputs
    the prior for every image and the decoder learns to ignore it (posterior collapse, Bowman et al. 2016).

    Chapter 03 (notebooks/03_vae.ipynb).
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


def _epoch_summary(model: vae_models.VAE, x_eval: torch.Tensor, epoch: int, sums: dict[str, float],
                   n: int, seconds: float, cpu_seconds: float) -> dict[str, float]:
    """The epoch's row of the history, measured on the CPU (a copy of the model when it trains elsewhere: the
    measures draw from CPU generators)."""
    model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    kl = vae_models.kl_per_dimension(model, x_eval)
    return {
        "epoch": epoch,
        **{k: round(v / n, 3) for k, v in sums.items()},
        "test_neg_elbo_bernoulli": round(float(vae_models.neg_elbo_bernoulli(model, x_eval).mean()), 3),
        "active_units": vae_models.active_units(kl),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }


def _log_epoch(h: dict[str, float], epochs: int) -> None:
    tqdm.write(f"epoch {h['epoch']:2d}/{epochs}: loss {h['loss']:.2f} (recon {h['recon']:.2f}, KL {h['kl']:.2f}), "
               f"test -ELBO {h['test_neg_elbo_bernoulli']:.2f}, {h['active_units']} active units, {h['seconds']:.1f} s")


def _eps_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The stream eps is drawn from: ``generator`` itself on the CPU (bit for bit the CPU runs), else a generator
    on ``device`` seeded from it at each epoch's start (so a resumed run draws the same eps)."""
    if device.type == "cpu":
        return generator
    return torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))


def train_vae(
    cfg: vae_models.VAEConfig | vae_models.ReferenceVAEConfig, recipe: VAERecipe, run: runs.Run, seed: int = 0,
    progress: bool = True, resume: bool = False, device: torch.device | None = None,
) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """Train a VAE with the eight steps of §3.2.2; return it (eval mode, on the CPU) and its per-epoch history
    (chapter 03).

    After every epoch the state goes to ``run`` (``runs/NAME/state.pt``); ``resume=True`` continues from it.
    A non-finite loss stops the run with ``runs.DivergenceError``. At the end, ``PosteriorCollapseWarning`` if
    most latent dimensions are unused. ``device``: default ``config.device()``. Under torchrun each rank trains on
    its slice of every global batch with the model in DDP and its own eps (``distributed.rank_seed``); the
    history holds the means over all ranks; rank 0 alone writes and logs.
    """
    device = device or config.device()
    with distributed.process_group(device):
        return _train_vae(cfg, recipe, run, seed, progress and distributed.is_main(), resume, device)


def _train_vae(
    cfg: vae_models.VAEConfig | vae_models.ReferenceVAEConfig, recipe: VAERecipe, run: runs.Run, seed: int,
    progress: bool, resume: bool, device: torch.device,
) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    config.seed_everything(seed)  # the same initial weights on every rank
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed))
    images = data.load("train")[0]
    x_all = data.to_float(images[: recipe.train_limit] if recipe.train_limit else images)
    x_eval = data.to_float(data.load("test")[0][: recipe.eval_images])
    # Step 1: initialise the encoder and the decoder (and the optimiser).
    model = vae_models.build_vae(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    start_epoch, step, history = run.restore({"model": model}, {"optimizer": optimizer}, generator) if resume \
        else (0, 0, [])
    steps = model if distributed.world().size == 1 else DataParallelVAE(model, device)
    monitor = runs.DivergenceMonitor(run)
    sampler = distributed.ShardSampler(len(x_all), recipe.batch_size, generator, seed, drop_last=False)
    # Step 8: repeat steps 2-7 over the epochs.
    for epoch in range(start_epoch + 1, recipe.epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        sampler.set_epoch(epoch)
        eps_generator = _eps_generator(generator, device)
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        bar = tqdm(sampler, total=len(sampler), desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress,
                   leave=False, mininterval=5.0)
        for idx in bar:
            x = x_all[idx].to(device)
            values = vae_step(steps, optimizer, x, recipe, eps_generator)
            step += 1
            monitor.check(step, distributed.mean_across_ranks(values))  # every rank stops at the same step
            for key, name in (("loss", "total"), ("recon", "recon"), ("kl", "kl")):
                sums[key] += values[name] * len(x)
            bar.set_postfix(loss=f"{values['total']:.1f}", refresh=False)
        sums = distributed.sum_across_ranks(sums)
        history.append(_epoch_summary(model, x_eval, epoch, sums, len(x_all), time.perf_counter() - start,
                                      time.process_time() - cpu_start))
        run.save(epoch, step, {"model": model}, {"optimizer": optimizer}, generator, history)
        if progress:
            _log_epoch(history[-1], recipe.epochs)
    model = model.cpu().eval()
    check_posterior_collapse(model, x_eval)
    return model, history
