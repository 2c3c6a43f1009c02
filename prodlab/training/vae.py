"""Training a VAE with the eight steps of the article's §3.2.2 (taught in chapter 03).

:func:`vae_step` is steps 2-7 for one batch, so chapter 03 can run it by hand and compare; :func:`train_vae` is
step 1 and step 8 around it: the workbook's one training loop (``prodlab.training.loop``) with this family's
summary per epoch, and the posterior-collapse check at the end. The article names no architecture, optimiser or
batch size: Adam 1e-3 and batches of 128 are the PyTorch example's settings, ours.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prodlab import data, datasets, distributed, losses, runs
from prodlab.models import vae as vae_models
from prodlab.training import loop


@dataclass(frozen=True)
class VAERecipe:
    """How a VAE is trained (§3.2.2, chapter 03): Adam on ``recon + beta * KL`` summed over pixels and latents,
    averaged over the batch.

    ``likelihood``: the article's ``"mse"`` (a Gaussian decoder with fixed variance) or ``"bce"`` (a Bernoulli
    cross-entropy on [0, 1] intensities, what the shipped models and the PyTorch reference use; not a normalised
    likelihood for grey levels, see chapter 01). ``reduction="mean"`` reproduces the "sum versus mean" trap: the
    reconstruction term is also averaged over the P pixels (784 for Fashion-MNIST), which is the same as training
    with ``beta * P``.
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
    recon = loss.recon / x[0].numel()  # the trap: F.mse_loss / F.binary_cross_entropy's default reduction
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


class VAEFamily(loop.Family):
    """The VAE as the training loop sees it (chapter 03): one Adam optimiser, :func:`vae_step` per batch, and a
    summary per epoch measured on the first ``recipe.eval_images`` test images (negative ELBO, active units).

    Step 1 of §3.2.2 (initialise the encoder, the decoder and the optimiser) is :meth:`build`.
    """

    per_step_history = False
    drop_last = False

    def __init__(self, cfg: vae_models.VAEConfig | vae_models.ReferenceVAEConfig, recipe: VAERecipe,
                 dataset: str) -> None:
        super().__init__()
        self.cfg, self.recipe, self.dataset = cfg, recipe, dataset
        self.batch_size, self.epochs = recipe.batch_size, recipe.epochs

    def build(self, device: torch.device) -> None:
        self.model = vae_models.build_vae(self.cfg).to(device)
        self.optimizers = {"optimizer": torch.optim.Adam(self.model.parameters(), lr=self.recipe.lr)}
        self.modules = {"model": self.model}
        self.steps = self.model if distributed.world().size == 1 else DataParallelVAE(self.model, device)
        self.x_eval = data.to_float(data.load("test", dataset=self.dataset)[0][: self.recipe.eval_images])

    def data(self) -> tuple[torch.Tensor, None]:
        return data.to_float(data.load("train", dataset=self.dataset)[0][: self.recipe.train_limit]), None

    def start_epoch(self, state: loop.State) -> None:
        """eps is drawn from the run's stream on the CPU (bit for bit the CPU runs); on another device from a
        generator there, seeded from the run's stream at each epoch's start (so a resumed run draws the same eps)."""
        self.eps = state.generator if state.device.type == "cpu" else torch.Generator(state.device).manual_seed(
            int(torch.randint(2**62, (1,), generator=state.generator)))

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: loop.State) -> dict[str, float]:
        values = vae_step(self.steps, self.optimizers["optimizer"], x, self.recipe, self.eps)
        return {"loss": values["total"], "recon": values["recon"], "kl": values["kl"]}

    def epoch_summary(self, state: loop.State, rows: list[dict[str, float]], n: int) -> dict[str, Any]:
        """Measured on the CPU (a copy of the model when it trains elsewhere: the measures draw from CPU
        generators): the test negative ELBO and the active units."""
        model = self.model if state.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        kl = vae_models.kl_per_dimension(model, self.x_eval)
        return {"test_neg_elbo_bernoulli": round(float(vae_models.neg_elbo_bernoulli(model, self.x_eval).mean()), 3),
                "active_units": vae_models.active_units(kl)}

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        h = state.epochs[-1]
        return (f"loss {h['loss']:.2f} (recon {h['recon']:.2f}, KL {h['kl']:.2f}), test -ELBO "
                f"{h['test_neg_elbo_bernoulli']:.2f}, {h['active_units']} active units")


def train_vae(
    cfg: vae_models.VAEConfig | vae_models.ReferenceVAEConfig, recipe: VAERecipe, run: runs.Run, seed: int = 0,
    progress: bool = True, resume: bool = False, device: torch.device | None = None,
    dataset: str = datasets.DEFAULT, threads: int | None = None,
) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """Train a VAE with the eight steps of §3.2.2 on ``dataset``; return it (eval mode, on the CPU) and its
    per-epoch history (chapter 03).

    The loop (``prodlab.training.loop``) saves the state after every epoch in ``run`` (``resume=True``
    continues from it); a non-finite loss stops the run with ``runs.DivergenceError``. At the end,
    ``PosteriorCollapseWarning`` if most latent dimensions are unused. Under torchrun each rank trains on its
    slice of every global batch with the model in DDP and its own eps; the history holds the means over all
    ranks; rank 0 alone writes and logs.
    """
    data.check_fits(cfg.image, dataset)
    family = VAEFamily(cfg, recipe, dataset)  # Step 8: the loop repeats steps 2-7 over the epochs.
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    model = family.model.cpu().eval()
    check_posterior_collapse(model, family.x_eval)
    return model, state.epochs
