"""The named recipes: how each shipped model is trained, in quick mode too, and ``train_and_save`` behind
``python -m prodlab train NAME [--set key=value ...]``.

One entry per trainable model: its shipped recipe, its quick recipe (``PRODLAB_QUICK=1``: a small honest run),
the baseline trained beside it (the dcgan's article recipe, the vae's PyTorch reference) and the function that
trains and measures it. ``--set`` overrides start from the shipped or quick recipe (``prodlab.recipes.override``).
A run that is not the shipped recipe writes into its run folder (``runs/NAME-...``), never over
``data/checkpoints``, unless a checkpoint folder is given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from prodlab import checkpoints, config, distributed, recipes, ruler, runs
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models
from prodlab.training import classifier as classifier_training
from prodlab.training import diffusion as diffusion_training
from prodlab.training import diffusion_measure, gan_measure, vae_measure
from prodlab.training import vae as vae_training
from prodlab.training.gan import GANRecipe
from prodlab.training.vae import VAERecipe


@dataclass(frozen=True)
class Context:
    """How a trainer is asked to run: seed, progress output, resume, its run folder, whether to train a baseline."""

    seed: int
    progress: bool
    resume: bool
    run: runs.Run
    with_baseline: bool


@dataclass(frozen=True)
class Trained:
    """What a trainer returns: the model to save, its measured metrics and the other JSON fields."""

    model: nn.Module
    metrics: dict[str, Any]
    extra: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """One trainable model: shipped and quick recipes, an optional baseline, and its trainer."""

    name: str
    recipe: Any
    quick: Any
    train: Callable[[str, Any, Any, Context], Trained]  # (name, recipe, baseline recipe, context)
    baseline: Any = None
    quick_baseline: Any = None
    description: str = ""


def _train_classifier(name: str, recipe: Any, _baseline: Any, ctx: Context) -> Trained:
    if ctx.resume:
        raise checkpoints.ModelError("the classifier trains in a few minutes and has no --resume; train it without")
    model, history = classifier_training.train_classifier(recipe, seed=ctx.seed, progress=ctx.progress)
    report = ruler.classifier_report(model, "test")
    measured = {k: v for k, v in report.items() if k != "test_confusion"}
    return Trained(model, measured, {"history": history, "test_confusion": report["test_confusion"]})


def _train_vae(name: str, recipe: VAERecipe, baseline: VAERecipe | None, ctx: Context) -> Trained:
    """A convolutional VAE (``vae``: 16-d, ``vae2d``: 2-d), and for ``vae`` the PyTorch reference beside it."""
    model, history = vae_training.train_vae(checkpoints.spec(name).config, recipe, ctx.run, ctx.seed, ctx.progress,
                                            ctx.resume)
    measured = vae_measure.measure_vae(name, model, ctx.seed)
    x = vae_measure.test_images()
    extra: dict[str, Any] = {"history": history,
                             "epochs_cpu_seconds": round(sum(h["cpu_seconds"] for h in history), 1),
                             "kl_per_dimension": [round(v, 4) for v in vae_models.kl_per_dimension(model, x).tolist()]}
    if baseline is not None and ctx.with_baseline:
        reference = vae_measure.train_reference_vae(baseline, ctx.seed, ctx.progress, ctx.resume)
        ours, theirs = measured["neg_elbo_bernoulli"], reference["metrics"]["neg_elbo_bernoulli"]
        extra["reference"] = reference
        extra["acceptance"] = {"neg_elbo_bernoulli": ours, "reference_neg_elbo_bernoulli": theirs,
                               "beats_reference": ours < theirs}
    return Trained(model, measured, extra)


def _train_gan(name: str, recipe: GANRecipe, baseline: GANRecipe | None, ctx: Context) -> Trained:
    """Train ``name`` and measure every generator of the run; ship the raw G or the EMA, whichever measured better.

    The baseline of the acceptance ratio is the article's recipe: a separate run of it when the entry has one
    (dcgan, whose recipe changes training itself), else the raw G of this run (the EMA only watches training).
    """
    n = config.budget(10_000, 500)
    shipped = gan_measure.measured_run(name, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume, n)
    best = gan_measure.choose_shipped(shipped.reports)
    raw_row = next(r for r in shipped.rows if r["variant"] == "raw")
    rows = shipped.rows
    if baseline is not None and ctx.with_baseline:
        base = gan_measure.measured_run(name, baseline, runs.Run(f"{ctx.run.name}-article", ctx.run.directory),
                                        ctx.seed, ctx.progress, ctx.resume, n)
        reference = {**base.rows[0], "note": "the article's losses, batches of 64: a separate run, as many epochs"}
        rows = base.rows + rows
    else:
        reference = {**raw_row, "note": "the raw G of this same run (the EMA only watches training): same CPU time"}
    extra = {
        "train_steps": raw_row["steps"], "train_cpu_seconds_steps": round(shipped.result.cpu_seconds, 1),
        "train_torch_threads": 1,  # train_gan runs on one thread
        "shipped_variant": best, "baseline": reference, "ablation": rows,
        "acceptance": gan_measure.acceptance(shipped, best, reference),
        "history": gan_measure.summarise_history(shipped.result.history),
        "snapshots": gan_measure.encode_snapshots(shipped.result.snapshots),
    }
    return Trained(shipped.variants[best], shipped.reports[best], extra)


QUICK_GAN_RECIPE = GANRecipe(epochs=1, train_limit=2048, ema_decay=0.9, bn_batches=4)
ARTICLE_GAN_RECIPE = GANRecipe(epochs=6, ema_decay=0.999)  # the article's losses with DCGAN's Adam, batches of 64

# The dcgan trains with batches of 16 instead of 64: on a CPU the cost of a step grows with the batch, so four
# times as many (noisier) updates fit in the same time, and they bought a lower FID at every budget measured.
ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("classifier", classifier_training.ClassifierRecipe(),
          classifier_training.ClassifierRecipe(epochs=1, train_limit=4096), _train_classifier,
          description="the ruler of chapter 04: a small CNN"),
    Entry("vae", VAERecipe(epochs=20), VAERecipe(epochs=1, train_limit=4096), _train_vae,
          vae_measure.REFERENCE_VAE_RECIPE, vae_measure.QUICK_REFERENCE_VAE_RECIPE,
          description="16-d convolutional VAE (chapter 03), the PyTorch reference VAE trained beside it"),
    Entry("vae-sharp", VAERecipe(epochs=20, beta=0.25), VAERecipe(epochs=1, train_limit=4096, beta=0.25), _train_vae,
          description="the vae's recipe with beta = 0.25: sharper codes, latent-diffusion's first stage (chapter 08)"),
    Entry("vae2d", VAERecipe(epochs=20), VAERecipe(epochs=1, train_limit=4096), _train_vae,
          description="2-d convolutional VAE for the latent map of chapter 03"),
    Entry("dcgan", GANRecipe(epochs=6, batch_size=16, ema_decay=0.999), QUICK_GAN_RECIPE, _train_gan,
          ARTICLE_GAN_RECIPE, description="DCGAN, batches of 16 + EMA, against the article's recipe (chapter 02)"),
    Entry("cdcgan", GANRecipe(epochs=8, ema_decay=0.999), QUICK_GAN_RECIPE, _train_gan,
          description="class-conditional DCGAN (chapter 02)"),
    Entry("diffusion", diffusion_training.SHIPPED_RECIPE, diffusion_training.QUICK_RECIPE,
          diffusion_measure.train_diffusion_entry,
          description="class-conditional flow-matching U-Net with classifier-free guidance (chapter 08)"),
    Entry("diffusion-short", diffusion_training.SHORT_RECIPE, diffusion_training.QUICK_RECIPE,
          diffusion_measure.train_diffusion_entry,
          description="the diffusion recipe cut to 5 epochs, the cdcgan's CPU budget (chapter 08's family table)"),
    Entry("latent-diffusion", diffusion_training.LATENT_RECIPE, diffusion_training.QUICK_LATENT_RECIPE,
          diffusion_measure.train_latent_entry,
          description="flow prior on vae-sharp's 16-d latent codes, decoded by its decoder (chapter 08)"),
)}

# Recipes compared at an equal budget of steps by ``python -m prodlab bench gan`` (chapter 02's ablation).
# Every variant keeps an EMA of G, which only watches training: each run also gives its own no-EMA row.
BENCH_GAN_VARIANTS: dict[str, tuple[gan_models.GANConfig, GANRecipe]] = {
    "article": (gan_models.GANConfig(), GANRecipe(epochs=2, ema_decay=0.999)),
    "hinge-sn-ttur": (gan_models.GANConfig(spectral_norm=True),
                      GANRecipe(epochs=2, loss="hinge", lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9), ema_decay=0.999)),
}
QUICK_BENCH_GAN_VARIANTS = {"article": (gan_models.GANConfig(), QUICK_GAN_RECIPE)}


def entry(name: str) -> Entry:
    """The registry entry of ``name``; ``ModelError`` listing the trainable models otherwise."""
    checkpoints.spec(name)
    if name not in ENTRIES:
        raise checkpoints.ModelError(f"no training recipe for {name!r}; recipes: {', '.join(sorted(ENTRIES))}")
    return ENTRIES[name]


def default_recipe(name: str) -> Any:
    """The recipe ``train NAME`` uses without ``--set``: the quick one in quick mode, else the shipped one."""
    e = entry(name)
    return e.quick if config.quick() else e.recipe


def resolve(name: str, overrides: list[str] | None = None) -> Any:
    """The recipe of ``train NAME --set ...``: the default recipe with the overrides applied and type-checked."""
    return recipes.override(default_recipe(name), overrides or [])


def run_name(name: str, recipe: Any) -> str:
    """The run folder's name: ``NAME`` for the shipped recipe, ``NAME-quick`` for the quick one, else
    ``NAME-`` and 8 hex digits of the recipe's hash (another recipe never resumes or clobbers this one)."""
    e = entry(name)
    if recipe == e.recipe:
        return name
    if recipe == e.quick:
        return f"{name}-quick"
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def output_dir(name: str, recipe: Any, directory: Path | None) -> Path:
    """Where the checkpoint goes: ``directory`` if given; ``data/checkpoints`` for the shipped recipe in full mode;
    otherwise the run folder, so an experiment never replaces a shipped model."""
    if directory is not None:
        return Path(directory)
    if recipe == entry(name).recipe and not config.quick():
        return config.CHECKPOINT_DIR
    return config.RUNS_DIR / run_name(name, recipe)


def train_and_save(
    name: str, recipe: Any = None, seed: int = 0, command: str | None = None, directory: Path | None = None,
    progress: bool = True, resume: bool = False,
) -> tuple[dict[str, Any], Path | None]:
    """Train model ``name`` with ``recipe`` (default: :func:`default_recipe`), measure it, write its checkpoint
    with the recipe, the command and the code version; return (metrics, JSON path).

    ``resume=True`` continues an interrupted run from its last finished epoch (``runs/RUN/state.pt``). Ctrl-C
    raises ``runs.Interrupted`` naming the last complete epoch; nothing half-written is left. Under torchrun
    (``prodlab.distributed``) every rank trains and rank 0 alone writes: the others return ``None`` as the path.
    """
    e = entry(name)
    recipe = default_recipe(name) if recipe is None else recipe
    overridden = recipe not in (e.recipe, e.quick)
    baseline = e.quick_baseline if recipe == e.quick else e.baseline
    run = runs.Run(run_name(name, recipe))
    ctx = Context(seed, progress, resume, run, with_baseline=not overridden)
    start, cpu_start = time.perf_counter(), time.process_time()
    with runs.interruptible(run):
        trained = e.train(name, recipe, baseline, ctx)
    if not distributed.is_main():
        return trained.metrics, None
    extra = {**trained.extra, "code_version": recipes.code_version(),
             "train_cpu_seconds": round(time.process_time() - cpu_start, 1)}
    _, meta_path = checkpoints.save(
        name, trained.model, recipe=recipes.recipe_to_json(name, recipe), seed=seed,
        command=command or f"python -m prodlab train {name} --seed {seed}", train_seconds=time.perf_counter() - start,
        metrics=trained.metrics, extra=extra, directory=output_dir(name, recipe, directory),
    )
    return trained.metrics, meta_path


def recipe_of(name: str, meta: dict[str, Any]) -> Any:
    """The recipe a checkpoint's JSON records, as the dataclass it was (``recipes.recipe_from_json``)."""
    return recipes.recipe_from_json(meta["recipe"], type(entry(name).recipe))
