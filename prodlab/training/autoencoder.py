"""Training the first stage of the text-to-product model (issue 26, notebook 10) and measuring what it keeps.

:func:`autoencoder_step` is one step (encode, draw a latent, decode, :func:`reconstruction_loss`, update);
:class:`AutoencoderFamily` runs it in the workbook's one training loop with AdamW and a one-cycle learning rate. A
first stage is only as good as what survives it: a text-to-image model cannot draw a stripe its decoder cannot, so
:func:`keeps` asks the catalogue's ruler to read the class, colour and pattern of test photos after a round trip
through the latents, beside its reading of the photos themselves.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from prodlab import config, data, datasets, ruler, runs
from prodlab.datasets import colour
from prodlab.models.autoencoder import Autoencoder, AutoencoderConfig, reconstruction_loss
from prodlab.training import loop
from prodlab.training.base import Context, Trained, train_then_measure


@dataclass(frozen=True)
class AutoencoderRecipe:
    """How the first stage is trained: AdamW with a one-cycle learning rate, and the KL weight (small: the latents
    keep the image, the KL only keeps their scale near 1). Chapter 10 (notebooks/10_text_to_product.ipynb)."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    kl_weight: float = 1e-3
    train_limit: int | None = None


def autoencoder_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, kl_weight: float,
                     generator: torch.Generator) -> dict[str, float]:
    """One step on images ``x`` in [0, 1]: a latent draw, the reconstruction loss, the update. Returns the loss and
    the reconstruction's mean squared error. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    recon, mean, logvar = model(x, generator)
    loss = reconstruction_loss(recon, x, mean, logvar, kl_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), "mse": float(torch.nn.functional.mse_loss(recon.detach(), x))}


class AutoencoderFamily(loop.RecipeFamily):
    """The first stage as the training loop sees it: :func:`autoencoder_step` per batch, AdamW, one-cycle.
    Chapter 10."""

    per_step_history = False

    def build(self, device: torch.device) -> None:
        images = len(data.load("train", dataset=self.dataset)[1][: self.recipe.train_limit])
        self.optimise(Autoencoder(self.cfg).to(device), device, images, self.recipe.lr)

    def data(self) -> tuple[Tensor, None]:
        return data.to_float(data.load("train", dataset=self.dataset)[0][: self.recipe.train_limit]), None

    def step(self, x: Tensor, y: Tensor | None, state: loop.State) -> dict[str, float]:
        out = autoencoder_step(self.net, self.optimizers["optimizer"], x, self.recipe.kl_weight, state.generator)
        self.optimizers["schedule"].step()
        return out

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        return f"loss {means['loss']:.5f}, mse {means['mse']:.5f}"


def train_autoencoder(cfg: AutoencoderConfig, recipe: AutoencoderRecipe, run: runs.Run, seed: int = 0,
                      progress: bool = True, resume: bool = False, device: torch.device | None = None,
                      dataset: str = colour.NAME, threads: int | None = None
                      ) -> tuple[Autoencoder, list[dict[str, float]]]:
    """Train the first stage on ``dataset``'s training photos; return it (eval mode, CPU) and its per-epoch history.
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    data.check_fits(cfg.image, dataset)
    family = AutoencoderFamily(cfg, recipe, dataset, seed)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    return family.model.cpu().eval(), state.epochs


def keeps(model: Autoencoder, dataset: str = colour.NAME, n: int = 10_000) -> dict[str, float]:
    """What the first stage keeps of the first ``n`` test photos: the reconstruction's PSNR, and the ruler's reading
    of the class and each attribute on the photos and on their reconstructions (``real_*`` and ``kept_*``: a good
    first stage loses almost nothing the ruler can read). Chapter 10."""
    images, labels = (t[:n] for t in data.load("test", dataset=dataset))
    attributes = datasets.attributes(dataset, "test")
    attributes = None if attributes is None else attributes[:n]
    recon = model.reconstruct(images)
    mse = float(((recon - data.to_float(images)) ** 2).mean())
    r = ruler.load(dataset=dataset)
    real = ruler.attribute_fidelity(r, images, labels, attributes)
    kept = ruler.attribute_fidelity(r, recon, labels, attributes)
    return {"n": len(images), "psnr": round(10 * math.log10(1 / mse), 2),
            **{f"real_{k}": round(v, 4) for k, v in real.items()},
            **{f"kept_{k}": round(v, 4) for k, v in kept.items()}}


def train_entry(recipe: AutoencoderRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train colour-autoencoder``: train the first stage and measure what it keeps (:func:`keeps`).
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return train_then_measure(train_autoencoder, recipe, ctx,
                              lambda model: keeps(model, ctx.dataset, config.budget(10_000, 500)))
