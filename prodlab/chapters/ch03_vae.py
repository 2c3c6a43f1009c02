"""VAEs (chapter 03, §2.3, §3.2.2, §4): the figures of notebooks/03_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import cache, checkpoints, data, plotting
from prodlab.figures import register
from prodlab.models import vae as vae_models
from prodlab.plotting import CMAP, as_numpy, finish, new_figure, show_image
from prodlab.training import vae_measure
from prodlab.training.vae import PosteriorCollapseWarning


def vae_history(history: Sequence[Mapping[str, float]], title: str = "VAE training") -> Figure:
    """Per-epoch reconstruction term, KL term and test negative ELBO of a VAE training run (§3.2.2 step 8)."""
    fig = new_figure(9, 3.0)
    axes = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    axes[0].plot(epochs, [h["recon"] for h in history], "o-", label="reconstruction (train)")
    axes[0].plot(epochs, [h["test_neg_elbo_bernoulli"] for h in history], "s--", label="-ELBO (test, Bernoulli)")
    axes[0].set_ylabel("nats per image")
    axes[0].legend(frameon=False, fontsize=8)
    axes[1].plot(epochs, [h["kl"] for h in history], "o-", color="#c44e52")
    axes[1].set_ylabel("KL(q(z|x) || p(z)), nats")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    return finish(fig)


def latent_manifold(tiles: torch.Tensor | np.ndarray, coords: np.ndarray, title: str) -> Figure:
    """Images decoded on a square grid of 2-D latent points (row-major, top row = largest z2) as one mosaic."""
    n = len(coords)
    picture = plotting.mosaic(tiles, n, n)
    fig = new_figure(7.2, 7.4)
    ax = fig.subplots()
    ax.imshow(picture, cmap=CMAP if picture.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest",
              extent=(-0.5, n - 0.5, -0.5, n - 0.5))
    ticks = np.arange(0, n, max(1, n // 5))
    ax.set_xticks(ticks, [f"{coords[i]:.1f}" for i in ticks])
    ax.set_yticks(ticks, [f"{coords[i]:.1f}" for i in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return finish(fig)


def beta_sweep(
    rows: Sequence[Mapping[str, float]], recons: Sequence[torch.Tensor], samples: Sequence[torch.Tensor],
    originals: torch.Tensor,
) -> Figure:
    """Left: rate (KL) against distortion per beta; right: reconstructions and samples of each beta's model."""
    fig = new_figure(12, 0.9 * (len(rows) + 1) + 0.6)
    left, right = fig.subfigures(1, 2, width_ratios=(1, 1.6))
    ax = left.subplots()
    rate, dist = [r["rate"] for r in rows], [r["distortion"] for r in rows]
    ax.plot(rate, dist, "o-", color="#4c72b0")
    for r in rows:
        ax.annotate(f"β = {r['beta']:g}", (r["rate"], r["distortion"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion D = -E log p(x|z), nats")
    ax.set_title("Rate against distortion (test images)")
    k = len(originals)
    grid = right.subplots(len(rows) + 1, 2 * k + 1, width_ratios=[1] * k + [0.3] + [1] * k)
    cells = [(originals, None), *zip(recons, samples, strict=True)]
    for r, (left_images, right_images) in enumerate(cells):
        for c, ax in enumerate(grid[r]):
            block, i = (left_images, c) if c < k else (right_images, c - k - 1)
            if block is not None and 0 <= i < len(block):
                show_image(ax, as_numpy(block[i : i + 1])[0])
            else:
                ax.axis("off")
        label = "test image" if r == 0 else f"β = {rows[r - 1]['beta']:g}"
        grid[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    right.suptitle("reconstructions of the test images (left) and random samples (right)", fontsize=10)
    return finish(fig)


def kl_per_dimension(kl: Mapping[str, np.ndarray], threshold: float) -> Figure:
    """Average KL of each latent dimension (sorted), one panel per model, with the 'active' threshold."""
    fig = new_figure(4.5 * len(kl), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(kl)))
    for ax, (name, values) in zip(axes, kl.items(), strict=True):
        v = np.sort(np.asarray(values))[::-1]
        active = int((v >= threshold).sum())
        ax.bar(range(len(v)), np.maximum(v, 1e-4), color=np.where(v >= threshold, "#4c72b0", "#c44e52"))
        ax.axhline(threshold, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("latent dimension (sorted)")
        ax.set_title(f"{name}: {active} of {len(v)} active", fontsize=9)
    axes[0].set_ylabel(f"KL per dimension, nats (dashed: {threshold})")
    return finish(fig)





VAE_SWEEP_IMAGES = 6  # test images (and samples) shown per model in the beta-sweep figure


@register("vae-reconstructions", "Test products and their VAE reconstructions", "§2.3, §3.2.2 steps 2-4", "03_vae",
          "The first test image of each class, decoded from its posterior mean by the shipped vae and vae2d.")
def vae_reconstructions() -> Figure:

    x = data.to_float(data.showcase()[0])
    rows = [x, checkpoints.load("vae").reconstruct(x), checkpoints.load("vae2d").reconstruct(x)]
    return plotting.labelled_rows(rows, ["test image", "vae (16-d)", "vae2d (2-d)"],
                               suptitle="Reconstructions: encode to the mean of q(z|x), decode")


@register("vae-samples", "Random products from the VAE", "§2.3, §3.2.2 step 8", "03_vae",
          "40 samples of the shipped vae (z ~ N(0, I), seed 0), each the decoder's mean image.")
def vae_samples() -> Figure:

    images, _ = checkpoints.generate("vae", 40, seed=0)
    return plotting.image_grid(images, ncols=10, suptitle="vae: decoded z ~ p(z) = N(0, I)")


@register("vae-manifold", "The 2-d latent manifold of products", "§2.3, §3.2", "03_vae",
          "The shipped vae2d decodes a 15 x 15 grid of latent points at the prior's quantiles 3 % .. 97 %.")
def vae_manifold() -> Figure:
    coords, z = vae_models.latent_grid(15)
    tiles = checkpoints.load("vae2d").decode(z).detach()
    return latent_manifold(tiles, coords.numpy(), "vae2d: decoded latent grid (equal prior mass per cell)")


@register("vae-latent", "The test set in the 2-d latent space", "§2.3, §3.2", "03_vae",
          "Posterior means of the 10,000 test images under the shipped vae2d, coloured by class.")
def vae_latent() -> Figure:

    images, labels = data.load("test")
    z = checkpoints.load("vae2d").embed(data.to_float(images))
    return plotting.latent_scatter(z.numpy(), labels.numpy(), data.spec().class_names,
                                "vae2d: test products embedded by the encoder (mean of q(z|x))")


def sweep_summary(rows: list[dict[str, Any]]) -> cache.Result:
    """What the beta-sweep figure draws of trained small VAEs (``vae_measure.beta_sweep`` rows): their numbers,
    their reconstructions of the first showcase products and their samples (seed 0)."""
    x = data.to_float(data.showcase()[0][:VAE_SWEEP_IMAGES])
    return {"rows": [{k: v for k, v in row.items() if k != "model"} for row in rows],
            "recons": torch.stack([row["model"].reconstruct(x) for row in rows]),
            "samples": torch.stack([row["model"].sample(VAE_SWEEP_IMAGES, torch.Generator().manual_seed(0))
                                    for row in rows])}


@cache.computation("vae-beta-sweep", "six small VAEs (16-d) trained with beta = 0.1 .. 784 and measured")
def beta_sweep_result() -> cache.Result:
    """The beta sweep of chapter 03 (``vae_measure.beta_sweep``), summarised by :func:`sweep_summary`; cached."""
    return sweep_summary(vae_measure.beta_sweep())


def beta_sweep_figure(summary: cache.Result) -> Figure:
    """Rate against distortion, with reconstructions and samples per beta, from :func:`sweep_summary`."""
    x = data.to_float(data.showcase()[0][:VAE_SWEEP_IMAGES])
    return beta_sweep(summary["rows"], list(summary["recons"]), list(summary["samples"]), x)


@register("vae-beta-sweep", "Rate against distortion: what beta does", "§2.3, §4 (VAE loss)", "03_vae",
          "Small VAEs (16-d) trained for 2 epochs on 10,000 images with beta = 0.1 .. 784, measured on 2,000 "
          "test images (python -m prodlab compute vae-beta-sweep).")
def vae_beta_sweep() -> Figure:
    return beta_sweep_figure(beta_sweep_result())


KL_IMAGES = 1000  # test images behind the KL-per-dimension numbers


def kl_of(model: vae_models.VAE) -> torch.Tensor:
    """Average KL to the prior per latent dimension on the first ``KL_IMAGES`` test images."""
    return vae_models.kl_per_dimension(model, data.to_float(data.load("test")[0][:KL_IMAGES]))


@cache.computation("vae-kl-trap", "two small VAEs, recon summed vs averaged over pixels: KL per dimension, the "
                   "trap's rate and distortion and the warning train_vae gave")
def kl_trap_result() -> cache.Result:
    """Two small VAEs, the reconstruction summed over pixels and averaged over them (the trap): the KL per
    dimension of each, the trap's :func:`vae_measure.rate_distortion` on 2,000 test images and the
    ``PosteriorCollapseWarning`` messages its training raised; cached."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trap, _ = vae_measure.train_small_vae(reduction="mean")
    return {"small, recon summed": kl_of(vae_measure.train_small_vae(reduction="sum")[0]),
            "small, recon averaged (trap)": kl_of(trap),
            "trap": vae_measure.rate_distortion(trap, data.to_float(data.load("test")[0][:2000])),
            "trap_warnings": [str(w.message) for w in caught if issubclass(w.category, PosteriorCollapseWarning)]}


def trap_kl(result: cache.Result) -> dict[str, torch.Tensor]:
    """The KL-per-dimension entries of :func:`kl_trap_result` (model name -> tensor)."""
    return {name: value for name, value in result.items() if isinstance(value, torch.Tensor)}


@register("vae-kl-per-dim", "Which latent dimensions are used", "§2.3, §4 (VAE loss)", "03_vae",
          "Average KL to the prior per latent dimension on the first 1,000 test images: the shipped vae, and two "
          "small VAEs trained with the reconstruction summed over pixels and averaged over pixels "
          "(python -m prodlab compute vae-kl-trap).")
def vae_kl_per_dim() -> Figure:
    return kl_per_dim_figure({"shipped vae": kl_of(checkpoints.load("vae")), **trap_kl(kl_trap_result())})


def kl_per_dim_figure(kl: dict[str, torch.Tensor]) -> Figure:
    """KL per latent dimension of each VAE (name -> :func:`kl_of`), against the active-unit threshold."""
    return kl_per_dimension({name: v.numpy() for name, v in kl.items()}, vae_models.ACTIVE_KL)


# ---------------------------------------------------------------- what a teacher would miss: AE, traversals, compute


@cache.computation("ae-vs-vae", "a plain autoencoder and a VAE, same layers and recipe: samples from N(0, I) measured")
def autoencoder_result() -> cache.Result:
    """``vae_measure.autoencoder_versus_vae`` (two small models trained, their samples measured); cached."""
    return vae_measure.autoencoder_versus_vae()


def autoencoder_figure(result: cache.Result) -> Figure:
    """16 samples per row: the plain autoencoder from N(0, I), from the Gaussian fitted to its codes, the VAE."""
    names = list(result["rows"])
    return plotting.labelled_rows(list(result["samples"]), names, label_width=2.6,
                                  suptitle="Decoding random codes: a plain autoencoder against a VAE (same layers)")


@register("vae-ae-samples", "Why the KL term: a plain autoencoder cannot sample", "§2.3, §4 (VAE loss)", "03_vae",
          "A plain autoencoder and a VAE with the same layers and recipe decode random codes "
          "(python -m prodlab compute ae-vs-vae).")
def vae_ae_samples() -> Figure:
    return autoencoder_figure(autoencoder_result())


def cumulative_cpu_minutes(history: Sequence[Mapping[str, float]]) -> np.ndarray:
    """CPU minutes spent by the end of each epoch of a training history (its ``cpu_seconds`` summed)."""
    return np.cumsum([h["cpu_seconds"] for h in history]) / 60.0


def equal_compute(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Test negative ELBO against the CPU minutes spent so far, one curve per training run (equal-compute view)."""
    fig = new_figure(6.5, 3.4)
    ax = fig.subplots()
    for name, history in histories.items():
        ax.plot(cumulative_cpu_minutes(history), [h["test_neg_elbo_bernoulli"] for h in history], "o-", ms=3,
                label=name)
    ax.set_xscale("log")
    ax.set_xlabel("CPU minutes spent (sum of the epochs so far)")
    ax.set_ylabel("-ELBO, first 1,000 test images (nats)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Equal compute: the same CPU time buys each model a different number of epochs", fontsize=10)
    return finish(fig)


@register("vae-equal-compute", "The VAE against the PyTorch reference at equal CPU time", "§4", "03_vae",
          "Per-epoch test -ELBO of the shipped vae and the PyTorch reference VAE against the CPU minutes spent, "
          "from data/checkpoints/vae.json.")
def vae_equal_compute() -> Figure:
    meta = checkpoints.read_meta("vae")
    return equal_compute({"vae (ours)": meta["history"], "PyTorch reference": meta["reference"]["history"]})


TRAVERSAL_VALUES = 9  # codes per traversal row, at the prior's quantiles 3 % .. 97 %


def latent_traversal(model: vae_models.VAE, z0: torch.Tensor, dims: Sequence[int],
                     values: torch.Tensor) -> torch.Tensor:
    """Decode ``z0`` with one latent dimension at a time set to each of ``values``: len(dims) x len(values) images
    (C x H x W each, the model's image spec). What one coordinate of the code controls, all others held fixed
    (chapter 03, §2.3)."""
    z = z0.reshape(1, 1, -1).repeat(len(dims), len(values), 1)
    for row, dim in enumerate(dims):
        z[row, :, dim] = values
    with torch.no_grad():
        return model.decode(z.reshape(-1, z.shape[-1])).reshape(len(dims), len(values), *model.cfg.image.shape)


def traversal_figure(model: vae_models.VAE, x0: torch.Tensor, kl: torch.Tensor, rows: int = 6) -> Figure:
    """Traversals of the ``rows`` latent dimensions with the largest KL (``kl``, per dimension), starting from
    the posterior mean of the product ``x0`` (1 x C x H x W)."""
    dims = kl.argsort(descending=True)[:rows].tolist()
    values = vae_models.latent_grid(TRAVERSAL_VALUES)[0]
    tiles = latent_traversal(model, model.embed(x0)[0], dims, values)
    return plotting.labelled_rows(list(tiles), [f"z{d} (KL {kl[d]:.2f})" for d in dims],
                                  col_titles=[f"{v:+.1f}" for v in values.tolist()], label_width=1.6,
                                  suptitle="One latent dimension at a time (the others at the product's code)")


@register("vae-traversals", "What each latent dimension of the VAE controls", "§2.3", "03_vae",
          "The shipped vae: the 6 dimensions with the largest KL on 1,000 test images, each varied over the "
          "prior's quantiles from the code of the first test sneaker.")
def vae_traversals() -> Figure:
    vae = checkpoints.load("vae")
    return traversal_figure(vae, traversal_product(), kl_of(vae))


def traversal_product() -> torch.Tensor:
    """The product the traversals start from: the first sneaker of the test set, 1 x 1 x 28 x 28."""
    images, labels = data.showcase()
    return data.to_float(images[labels == data.spec().class_names.index("Sneaker")])
