"""Measuring VAEs, and the small VAEs of chapter 03's experiments (the beta sweep, the sum-versus-mean trap).

The shipped ``vae`` is compared with the PyTorch example VAE (``examples/vae/main.py``) trained by its own recipe.
The two are not trained for the same CPU time; the checkpoint records both times so chapter 03 can say so.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from prodlab import checkpoints, config, data, datasets, ruler, runs
from prodlab.models import vae as vae_models
from prodlab.training.base import Context, Trained
from prodlab.training.vae import VAERecipe, train_vae

# The PyTorch examples VAE recipe (examples/vae/main.py): 10 epochs, batch 128, Adam 1e-3, BCE sum + KL.
REFERENCE_VAE_RECIPE = VAERecipe(epochs=10, batch_size=128, lr=1e-3, likelihood="bce")
QUICK_REFERENCE_VAE_RECIPE = dataclasses.replace(REFERENCE_VAE_RECIPE, epochs=1, train_limit=4096)


def test_images(dataset: str = datasets.DEFAULT) -> Any:
    """The test images a VAE is measured on: all of them, at most 10,000 (quick mode: the first 1,000).

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return data.to_float(data.load("test", dataset=dataset)[0][: config.budget(10_000, 1000)])


def likelihoods(model: vae_models.VAE, seed: int = 0, dataset: str = datasets.DEFAULT) -> dict[str, Any]:
    """``vae_models.likelihood_report`` on :func:`test_images`, IWAE on 1,000 of them (quick mode: 100).

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return vae_models.likelihood_report(model, test_images(dataset), iwae_images=config.budget(1000, 100), seed=seed)


def measure_vae(name: str, model: vae_models.VAE, seed: int = 0, dataset: str = datasets.DEFAULT) -> dict[str, Any]:
    """A VAE's test-set numbers: likelihoods (:func:`likelihoods`) and, when the data set has a ruler, its sample
    metrics. Chapter 03 (notebooks/03_vae.ipynb).
    """
    report: dict[str, Any] = likelihoods(model, seed, dataset)
    if ruler.find(dataset) is not None:
        images, _ = checkpoints.generate(name, config.budget(10_000, 1000), seed, model=model)
        report.update(ruler.generator_report(images, r=ruler.load(dataset=dataset), seed=seed))
    return report


def train_reference_vae(recipe: VAERecipe, seed: int = 0, progress: bool = True, resume: bool = False,
                        dataset: str = datasets.DEFAULT) -> dict[str, Any]:
    """Train the PyTorch example VAE with ``recipe`` and measure it on the test set (the yardstick of ``vae``).

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    cfg = vae_models.ReferenceVAEConfig(data.spec(dataset))
    cpu_start = time.process_time()
    model, history = train_vae(cfg, recipe, runs.Run("vae-reference"), seed, progress, resume, dataset=dataset)
    report = likelihoods(model, seed, dataset)
    return {"model": "ReferenceMLPVAE (PyTorch examples/vae/main.py)", "config": dataclasses.asdict(cfg),
            "recipe": dataclasses.asdict(recipe), "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
            "epochs_cpu_seconds": round(sum(h["cpu_seconds"] for h in history), 1), "history": history,
            "metrics": report}


def train_entry(recipe: VAERecipe, baseline: VAERecipe | None, ctx: Context) -> Trained:
    """``train vae|vae-sharp|vae2d``: a convolutional VAE, measured; for ``vae`` the PyTorch reference beside it.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    model, history = train_vae(ctx.config, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume, ctx.device,
                               ctx.dataset, ctx.threads)
    if not ctx.measures:
        return Trained(model, {}, {})
    measured = measure_vae(ctx.name, model, ctx.seed, ctx.dataset)
    x = test_images(ctx.dataset)
    extra: dict[str, Any] = {"history": history,
                             "epochs_cpu_seconds": round(sum(h["cpu_seconds"] for h in history), 1),
                             "kl_per_dimension": [round(v, 4) for v in vae_models.kl_per_dimension(model, x).tolist()]}
    if baseline is not None and ctx.with_baseline:
        reference = train_reference_vae(baseline, ctx.seed, ctx.progress, ctx.resume, ctx.dataset)
        ours, theirs = measured["neg_elbo_bernoulli"], reference["metrics"]["neg_elbo_bernoulli"]
        extra["reference"] = reference
        extra["acceptance"] = {"neg_elbo_bernoulli": ours, "reference_neg_elbo_bernoulli": theirs,
                               "beats_reference": ours < theirs}
    return Trained(model, measured, extra)


# Small VAEs trained live in chapter 03 (beta sweep, the sum-versus-mean trap): a subset, a few epochs.
SMALL_LATENT_DIM = 16


def small_vae_config(autoencoder: bool = False) -> vae_models.VAEConfig:
    """The small VAE's shape (the shipped vae's) for Fashion-MNIST; the same layers as a plain autoencoder.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    cls = vae_models.AutoencoderConfig if autoencoder else vae_models.VAEConfig
    return cls(data.spec(), latent_dim=SMALL_LATENT_DIM)
BETA_SWEEP = (0.1, 0.5, 1.0, 4.0, 16.0, float(data.spec().num_pixels))  # the last: the "mean" trap's weight


def small_vae_recipe(beta: float = 1.0, reduction: str = "sum", likelihood: str = "bce") -> VAERecipe:
    """2 epochs on 10,000 training images (quick mode: 1 epoch on 2,000): seconds, not minutes.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return VAERecipe(epochs=config.budget(2, 1), train_limit=config.budget(10_000, 2_000), beta=beta,
                     reduction=reduction, likelihood=likelihood)


def train_small_vae(beta: float = 1.0, reduction: str = "sum", likelihood: str = "bce", seed: int = 0,
                    progress: bool = False) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """Train a small VAE (``small_vae_config``, ``small_vae_recipe``); its state goes to ``runs/vae-small-...``.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    recipe = small_vae_recipe(beta, reduction, likelihood)
    run = runs.Run(f"vae-small-{likelihood}-{reduction}-beta{beta:g}")
    return train_vae(small_vae_config(), recipe, run, seed, progress)


def rate_distortion(model: vae_models.VAE, x: Any, seed: int = 0) -> dict[str, float]:
    """Rate R (KL, nats), distortion D (Bernoulli, nats), -ELBO = D + R, PSNR and active units of ``model`` on x.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    distortion, rate = vae_models.elbo_terms(model, x, seed)
    return {"rate": float(rate.mean()), "distortion": float(distortion.mean()),
            "neg_elbo": float((distortion + rate).mean()), "recon_psnr": float(vae_models.recon_psnr(model, x).mean()),
            "active_units": vae_models.active_units(vae_models.kl_per_dimension(model, x))}


def beta_sweep(betas: tuple[float, ...] = BETA_SWEEP, n_test: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Train one small VAE per ``beta`` and measure it on the first ``n_test`` test images (chapter 03).

    Each row: beta, :func:`rate_distortion`'s numbers and the trained ``model`` itself.
    """
    x = data.to_float(data.load("test")[0][:n_test])
    rows = []
    for beta in betas:
        model, _ = train_small_vae(beta, seed=seed)
        rows.append({"beta": beta, **rate_distortion(model, x, seed), "model": model})
    return rows


# A plain autoencoder next to the small VAE (chapter 03, "why the KL term"): same layers, same recipe, beta = 0.
AE_SAMPLES = 5000  # samples per model measured with the ruler (quick mode: 1,000)


def train_small_autoencoder(seed: int = 0, progress: bool = False) -> tuple[vae_models.VAE, list[dict[str, float]]]:
    """The plain autoencoder of the small VAE's shape, trained by ``train_vae`` with ``small_vae_recipe``
    and ``beta = 0`` (its codes are points, so there is no KL to pay); state in ``runs/ae-small``.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return train_vae(small_vae_config(autoencoder=True), small_vae_recipe(beta=0.0), runs.Run("ae-small"), seed,
                     progress)


def fitted_gaussian_codes(codes: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` codes drawn from the Gaussian (mean, full covariance) fitted to ``codes``: the prior an autoencoder
    would need, estimated after training. Chapter 03 (notebooks/03_vae.ipynb)."""
    mean, cov = codes.mean(0), torch.cov(codes.T)
    scale = torch.linalg.cholesky(cov + 1e-5 * torch.eye(len(mean)))
    return mean + torch.randn(n, len(mean), generator=generator) @ scale.T


def code_statistics(codes: torch.Tensor) -> dict[str, float]:
    """How far a model's codes (posterior means) are from the prior ``N(0, I)``: per-dimension mean and standard
    deviation ranges, and the average code norm (``N(0, I)`` draws have norm about sqrt(d)). Chapter 03."""
    std, mean = codes.std(0), codes.mean(0)
    return {"std_min": float(std.min()), "std_max": float(std.max()), "mean_abs_max": float(mean.abs().max()),
            "norm": float(codes.norm(dim=1).mean()), "prior_norm": float(torch.randn(20_000, codes.shape[1],
            generator=torch.Generator().manual_seed(0)).norm(dim=1).mean())}


def autoencoder_versus_vae(seed: int = 0) -> dict[str, Any]:
    """Train the small autoencoder and the small VAE (beta = 1) with the same layers and recipe, then measure
    each: reconstruction PSNR on the first 2,000 test images, the statistics of their codes, and the ruler's
    FID / precision / recall of samples decoded from ``z ~ N(0, I)`` (and, for the autoencoder, from the Gaussian
    fitted to its codes). Returns numbers and 16 sample images per row. Chapter 03 (notebooks/03_vae.ipynb).
    """
    ae, _ = train_small_autoencoder(seed)
    vae, _ = train_small_vae(1.0, seed=seed)
    x = data.to_float(data.load("test")[0][:2000])
    n = config.budget(AE_SAMPLES, 1000)
    ae_codes = ae.embed(x)
    draws = {"AE, z ~ N(0, I)": ae.sample(n, torch.Generator().manual_seed(seed)),
             "AE, z ~ Gaussian fitted to its codes":
                 ae.decode(fitted_gaussian_codes(ae_codes, n, torch.Generator().manual_seed(seed))).detach(),
             "VAE, z ~ N(0, I)": vae.sample(n, torch.Generator().manual_seed(seed))}
    models = {"AE": ae, "VAE": vae}
    return {"rows": {name: sample_metrics(images, seed) for name, images in draws.items()},
            "psnr": {name: float(vae_models.recon_psnr(m, x).mean()) for name, m in models.items()},
            "codes": {"AE": code_statistics(ae_codes), "VAE": code_statistics(vae.embed(x))},
            "samples": torch.stack([images[:16] for images in draws.values()]), "n_samples": n}


def sample_metrics(images: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """FID, precision and recall of float sample images against the test set (the ruler of chapter 04)."""
    report = ruler.generator_report(data.to_uint8(images), seed=seed)
    return {k: float(report[k]) for k in ("fid", "precision", "recall")}
