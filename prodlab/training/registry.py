"""The one registry of the workbook's models: one :class:`Entry` per model, and ``train_and_save`` behind
``python -m prodlab train NAME [--data DATASET] [--set key=value ...]``.

An entry says everything about a model: its family (``kind``, which names its network and config classes), how its
config follows a data set's image spec, the data set it is trained on by default, its shipped recipe and its quick
recipe (``PRODLAB_QUICK=1``: a small honest run), the baseline trained beside it (the dcgan's article recipe, the
vae's PyTorch reference) and the function that trains and measures it. ``--set`` overrides start from the shipped
or quick recipe (``prodlab.recipes.override``). A run that is not the shipped recipe on the default data set writes
into its run folder (``runs/NAME-...``, ``runs/DATASET/NAME-...``), never over ``data/checkpoints``, unless a
checkpoint folder is given.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prodlab import checkpoints, config, data, datasets, distributed, models, recipes, runs
from prodlab.datasets import colour
from prodlab.datasets.spec import ImageSpec
from prodlab.models.autoencoder import AutoencoderConfig
from prodlab.models.classifier import ClassifierConfig
from prodlab.models.clip import CLIPConfig
from prodlab.models.encoder import EncoderConfig
from prodlab.models.gan import GANConfig
from prodlab.models.text_diffusion import TextDiffusionConfig
from prodlab.models.unet import DiffusionConfig, LatentDiffusionConfig
from prodlab.models.vae import VAEConfig
from prodlab.training import autoencoder as autoencoder_training
from prodlab.training import classifier as classifier_training
from prodlab.training import clip as clip_training
from prodlab.training import contrastive, diffusion_measure, distill, gan_measure, vae_measure
from prodlab.training import diffusion as diffusion_training
from prodlab.training import text_diffusion as text_diffusion_training
from prodlab.training.base import Context, Trained
from prodlab.training.gan import GANRecipe
from prodlab.training.vae import VAERecipe

Trainer = Callable[[Any, Any, Context], Trained]  # (recipe, baseline recipe or None, context)


@dataclass(frozen=True)
class Entry:
    """One model: its family, its config for a data set's images, its recipes, its baseline and its trainer."""

    name: str
    kind: str  # a key of ``prodlab.models.FAMILIES``
    config: Callable[[ImageSpec], Any]  # the model's config dataclass for a data set's image spec
    recipe: Any
    quick: Any
    train: Trainer
    baseline: Any = None
    quick_baseline: Any = None
    dataset: str = datasets.DEFAULT
    description: str = ""

    @property
    def generative(self) -> bool:
        """Its network draws images (every family but the two rulers', the classifier and the encoder)."""
        return models.draws_images(self.kind)

    def conditional(self, image: ImageSpec | None = None) -> bool:
        """Whether its ``sample`` takes class labels (built for ``image``, default its data set's)."""
        return getattr(self.config(image or data.spec(self.dataset)), "n_classes", 0) > 0


QUICK_GAN_RECIPE = GANRecipe(epochs=1, train_limit=2048, ema_decay=0.9, bn_batches=4)
ARTICLE_GAN_RECIPE = GANRecipe(epochs=6, ema_decay=0.999)  # the article's losses with DCGAN's Adam, batches of 64
QUICK_VAE_RECIPE = VAERecipe(epochs=1, train_limit=4096)
CLASSIFIER_RECIPE = classifier_training.ClassifierRecipe()
QUICK_CLASSIFIER_RECIPE = classifier_training.ClassifierRecipe(epochs=1, train_limit=4096)
# The colour cdcgan keeps the cdcgan's width (w = 32) and spends its 60 CPU-minute budget on many small steps, as
# the dcgan does: batches of 16 and 8 epochs (30,000 steps). Screened for 2 epochs each on 2 threads (2,000 samples,
# the colour ruler, EMA weights): batches of 64 gave class fidelity 0.22 in 9 CPU-minutes, batches of 16 0.63 in
# 13, and batch norms conditioned on the labels (class_norm) on top 0.67 (FID 35 against 41). The first shipped
# recipe, batches of 64 for 9 epochs, reached 0.74 in 37 CPU-minutes. Width 48 costs 1.9 times as much a step.
# That recipe reached class fidelity 0.80 (colour 0.99): pullovers, coats and shirts were drawn as one another. A class
# head on D (AC-GAN, ``aux_weight``; one thread, 8 epochs, 2,000 samples) lifted it to 0.869 (pullover 0.73 -> coat
# 0.74 the weakest) at FID 12.9 in 41 CPU-minutes; a weight of 3 lost colour fidelity (0.93 after 2 epochs).
COLOUR_GAN_RECIPE = GANRecipe(epochs=8, batch_size=16, ema_decay=0.999, aux_weight=1.0)
# The second rulers' SimCLR recipe was screened for 2 epochs on 30,000 images (one thread, about 2.6 CPU-minutes
# each; k-NN accuracy on the 10,000 test images, linear probe beside it): batches of 256 at temperature 0.2 gave
# 0.799 (probe 0.819), temperature 0.5 0.791, crops down to 0.2 of the area 0.796, batches of 128 0.801 (0.827), and
# with temperature 0.1 0.810 (0.831); the raw pixels give 0.841, an untrained encoder 0.766. Widths (32, 64, 128)
# reached the same k-NN accuracy (0.809, probe 0.841) in the same CPU time, but every image measured would cost
# 2.3 times as much. The colour catalogue's steps cost 1.3 times as much: one epoch fewer keeps it near 15 minutes.
# Its products' shades differ a little each (``datasets.colour.JITTER``), a cue to tell two views of one product from
# the others that says nothing of its class: a gain of up to 10 % per channel blurs it (2 epochs on 20,000 images:
# class k-NN accuracy 0.632 against 0.621 without, probe 0.702 against 0.691; colour 0.991 both, pattern 0.954 and
# 0.946). Colour and pattern, independent of the class, are most of what separates two products of the catalogue,
# so a product's nearest neighbours share its colour and pattern first and its class less often.
ENCODER_RECIPE = contrastive.ContrastiveRecipe()
COLOUR_ENCODER_RECIPE = dataclasses.replace(ENCODER_RECIPE, epochs=4, channel_gain=0.1)
QUICK_ENCODER_RECIPE = contrastive.ContrastiveRecipe(epochs=1, train_limit=1024)


def _clip_config(image: ImageSpec) -> CLIPConfig:
    """The text-image model's config for a catalogue's images, with the tokenizer of every phrasing it can write."""
    return CLIPConfig(image, clip_training.catalogue_tokenizer(image))


# CLIP's text encoder, measured on the colour catalogue (5 epochs, one thread): the transformer (9.6 CPU-minutes)
# reached text-to-image precision at 10 by class and colour of 0.917 (held-out combinations 0.996) and zero-shot
# class accuracy 0.811, colour 1.000, pattern 0.994; the bag of words (8.7 CPU-minutes) 0.919, 0.996, 0.814, 1.000,
# 0.995. The catalogue's captions are bags of attribute words, so order tells nothing; the transformer is kept for
# its per-token outputs, each of which has read the whole prompt: what a generator's cross-attention reads.
CLIP_RECIPE = clip_training.CLIPRecipe()
# The first stage, screened on one thread (widths 16, 32, 64; the ruler on 2,000 test photos after the round trip): one
# epoch on 20,000 photos kept the class of 69 % (the photos themselves: 89 %), 4 latent channels ahead of 8 (64 %);
# two epochs on all 60,000 (12.6 CPU-minutes) kept 84 % of classes, every colour and 96 % of patterns (8 channels: the
# same loss). Three epochs, since a text-to-product model cannot draw what its decoder loses.
AUTOENCODER_RECIPE = autoencoder_training.AutoencoderRecipe(epochs=3)
# The denoiser. A diffusion transformer (width 96, depth 4, 0.82 M parameters, 43 CPU-minutes of steps) drew every
# pattern but dots (the ruler read dots on 0.06 of the dotted requests): no sampler, guidance scale, negative prompt or
# dots-weighted fine-tune changed that. Pilots of chapter 08's U-Net on the same latents (width 64, batches of 128,
# learning rate 1e-3, 25 CPU-minutes on one thread, 284 seen requests, Heun 6 at guidance 3) read class / pattern /
# dots 0.944 / 0.884 / 0.53 conditioned on the labels, 0.919 / 0.849 / 0.43 on the prompt's summary alone, and
# 0.926 / 0.856 / 0.50 with the summary plus cross-attention to the tokens at every stage (2.8 M parameters, 42 ms
# an image), the dots still rising. That last one is shipped: a step of 128 latents costs 0.73 CPU-s, and nine epochs
# (3,897 steps, planned at 48 CPU-minutes) took 41.7, within the 90-minute budget beside CLIP (10) and the first stage
# (20). Measured on 5,000 balanced requests: seen class 0.943, colour 1.000, pattern 0.908; dotted requests 0.62.
TEXT_DIFFUSION_RECIPE = text_diffusion_training.TextDiffusionRecipe(epochs=9, batch_size=128, lr=1e-3, width=64)


def _text_diffusion_config(image: ImageSpec) -> TextDiffusionConfig:
    """The text-to-product model's config for a catalogue's images; the trainer rebuilds it from its shipped parts."""
    return TextDiffusionConfig(AutoencoderConfig(image), _clip_config(image))


# The four-call student of ``diffusion`` (issue 27), piloted on 10,000 teacher trajectories, batches of 128, AdamW at
# 2e-4 (FID on 2,000 samples, classifier's space / encoder's; the teacher's full sampler: 2.24 / 0.138). Windows
# starting on the teacher's states: 2.65 / 0.181 after 500 steps, 2.59 / 0.165 after 1,500. Windows starting on the
# student's own path: 2.45 / 0.167 after 500 (EMA), 2.43 / 0.165 after 1,000 and 2.42 / 0.163 after 1,500 (a cosine
# decay over 1,500). Swapping in the teacher's solve for its first three windows or for its last left the encoder's FID
# at 0.155 and 0.154: the gap is spread over the windows. Shipped: 15,000 trajectories, about 2,000 steps. A one-window
# reflow of 6,000 pairs had reached only 3.74 / 0.293.
# Tried on the shipped student and dropped (2,000 samples as above; the shipped student: 2.41 / 0.162): a hinge
# discriminator on its last step's image at weights 0.03 and 0.1 (400 steps) gave 2.42 / 0.156 and 2.42 / 0.154, a
# small D telling its images from real ones no better than chance (hinge loss 1.85 of 2); the teacher's own solve
# from the student's state as every window's target (DAgger's expert query) gave 2.68 / 0.182 after 300 steps, as
# the last window's alone 2.52 / 0.170. On 2,000 of its own training trajectories the student is 1.21 x the teacher's
# FID on the same noise (2.49 against 2.07), as on new noise: it underfits the teacher's map (squared error of its
# last state 0.0024 on training noise, 0.0036 on new), so more trajectories alone will not close the gap.
# Its last-step images are a little smoother than the teacher's (3 % less Laplacian energy); sharpening them by hand
# lowers the encoder's FID and raises the classifier's. So capacity, not data: fine-tuning the shipped single-network
# student (10,000 samples, both spaces; it: 2.188 / 0.1522) for 600 steps at 1e-4 gave 2.191 / 0.1519 as one network,
# 2.161 / 0.1526 as four window experts, and 2.132 / 0.1477 for 1,500 steps as experts (the same 1,500 drawing the
# later windows more often: 2.134 / 0.150; a pseudo-Huber loss, 600 steps: 2.199 / 0.152). Hence the experts' phase.
# The student of experts (2.104 / 0.1452) is no better on its own training noise (2.105 / 0.141, the teacher's ends
# of the same noise 1.825 / 0.133), though its last state's squared error there is 0.0015 against 0.0027 on new
# noise: more trajectories would not close the gap. Swapping in the teacher's guided steps for its first window, its
# first two, its first three or its last gave 2.050, 1.937, 1.913 and 1.968 (classifier's space): every window costs.
# Fine-tuning it for 600 steps at 1e-4 with a gradient-domain term beside the window loss gave 2.107 / 0.147; with the
# end-to-end term (48 trajectories a step) at weights 1, 3, 10 and 30: 2.089, 2.086, 2.079 and 2.080 (encoder's space
# 0.1443 to 0.1438), and at weight 10 for 1,200 steps 2.059 / 0.143. Hence the joint phase, for about 1,400 steps.
DISTILL_RECIPE = distill.DistillRecipe()


def _distilled_config(image: ImageSpec) -> DiffusionConfig:
    """The student's config: the shipped diffusion U-Net (one per step when the recipe trains experts), sampled by
    plain Euler steps without guidance."""
    return distill.student_config(diffusion_training.image_config(diffusion_training.SHIPPED_RECIPE, image),
                                  DISTILL_RECIPE.student_steps, DISTILL_RECIPE.experts)


def _latent_config(image: ImageSpec) -> LatentDiffusionConfig:
    """A latent prior's config for ``image``; the trainer rebuilds it from its first stage's own config."""
    return LatentDiffusionConfig(VAEConfig(image))


# The dcgan trains with batches of 16 instead of 64: on a CPU the cost of a step grows with the batch, so four
# times as many (noisier) updates fit in the same time, and they bought a lower FID at every budget measured.
ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("classifier", "classifier", ClassifierConfig, CLASSIFIER_RECIPE, QUICK_CLASSIFIER_RECIPE,
          classifier_training.train_entry, description="the ruler of chapter 04: a small CNN"),
    Entry("colour-classifier", "classifier", ClassifierConfig, CLASSIFIER_RECIPE, QUICK_CLASSIFIER_RECIPE,
          classifier_training.train_entry, dataset=colour.NAME,
          description="the colour catalogue's ruler: the classifier with a head per attribute"),
    Entry("vae", "vae", VAEConfig, VAERecipe(epochs=20), QUICK_VAE_RECIPE, vae_measure.train_entry,
          vae_measure.REFERENCE_VAE_RECIPE, vae_measure.QUICK_REFERENCE_VAE_RECIPE,
          description="16-d convolutional VAE (chapter 03), the PyTorch reference VAE trained beside it"),
    Entry("vae-sharp", "vae", VAEConfig, VAERecipe(epochs=20, beta=0.25), VAERecipe(epochs=1, train_limit=4096,
          beta=0.25), vae_measure.train_entry,
          description="the vae's recipe with beta = 0.25: sharper codes, latent-diffusion's first stage (chapter 08)"),
    Entry("vae2d", "vae", functools.partial(VAEConfig, latent_dim=2), VAERecipe(epochs=20), QUICK_VAE_RECIPE,
          vae_measure.train_entry, description="2-d convolutional VAE for the latent map of chapter 03"),
    Entry("colour-vae", "vae", functools.partial(VAEConfig, latent_dim=32, channels=(32, 64, 128)),
          VAERecipe(epochs=20), QUICK_VAE_RECIPE, vae_measure.train_entry, dataset=colour.NAME,
          description="32-d VAE of the colour catalogue: recolouring by latent directions, the explorer"),
    Entry("dcgan", "gan", GANConfig, GANRecipe(epochs=6, batch_size=16, ema_decay=0.999), QUICK_GAN_RECIPE,
          gan_measure.train_entry, ARTICLE_GAN_RECIPE,
          description="DCGAN, batches of 16 + EMA, against the article's recipe (chapter 02)"),
    Entry("cdcgan", "gan", functools.partial(GANConfig, conditional=True), GANRecipe(epochs=8, ema_decay=0.999),
          QUICK_GAN_RECIPE, gan_measure.train_entry, description="class-conditional DCGAN (chapter 02)"),
    Entry("colour-cdcgan", "gan",
          functools.partial(GANConfig, conditional=True, width=32, class_norm=True, aux_classifier=True),
          COLOUR_GAN_RECIPE, dataclasses.replace(QUICK_GAN_RECIPE, aux_weight=1.0), gan_measure.train_entry,
          dataset=colour.NAME,
          description="DCGAN conditioned on class, colour and pattern, on the colour catalogue"),
    Entry("diffusion", "diffusion", DiffusionConfig, diffusion_training.SHIPPED_RECIPE,
          diffusion_training.QUICK_RECIPE, diffusion_measure.train_diffusion_entry,
          description="class-conditional flow-matching U-Net with classifier-free guidance (chapter 08)"),
    Entry("diffusion-short", "diffusion", DiffusionConfig, diffusion_training.SHORT_RECIPE,
          diffusion_training.QUICK_RECIPE, diffusion_measure.train_diffusion_entry,
          description="the diffusion recipe cut to 5 epochs, the cdcgan's CPU budget (chapter 08's family table)"),
    Entry("diffusion-fast", "diffusion", _distilled_config, DISTILL_RECIPE,
          dataclasses.replace(DISTILL_RECIPE, trajectories=256, epochs=1, batch_size=64, warmup_steps=2,
                              expert_epochs=1, joint_epochs=1, joint_batch=16),
          distill.train_entry,
          description="diffusion distilled into 4 Euler steps without guidance: 4 network calls, not 46 (chapter 08)"),
    Entry("colour-diffusion", "diffusion", DiffusionConfig, diffusion_training.COLOUR_RECIPE,
          diffusion_training.QUICK_RECIPE, diffusion_measure.train_diffusion_entry, dataset=colour.NAME,
          description="flow-matching U-Net conditioned on class, colour and pattern, with guidance, on the colour "
                      "catalogue"),
    Entry("clip", "clip", _clip_config, CLIP_RECIPE, dataclasses.replace(CLIP_RECIPE, epochs=1, train_limit=2048),
          clip_training.train_entry, dataset=colour.NAME,
          description="CLIP in miniature: a text encoder and an image encoder trained on the colour catalogue's "
                      "words (chapter 10)"),
    Entry("colour-autoencoder", "autoencoder", AutoencoderConfig, AUTOENCODER_RECIPE,
          autoencoder_training.AutoencoderRecipe(epochs=1, train_limit=2048), autoencoder_training.train_entry,
          dataset=colour.NAME,
          description="the first stage of text-diffusion: colour photos to 4 x 8 x 8 latents and back (chapter 10)"),
    Entry("text-diffusion", "text-diffusion", _text_diffusion_config, TEXT_DIFFUSION_RECIPE,
          dataclasses.replace(TEXT_DIFFUSION_RECIPE, epochs=1, train_limit=1024, warmup_steps=2),
          text_diffusion_training.train_entry, dataset=colour.NAME,
          description="text to product: a U-Net on colour-autoencoder's latents, reading clip's words by "
                      "cross-attention (chapter 10)"),
    Entry("latent-diffusion", "latent-diffusion", _latent_config, diffusion_training.LATENT_RECIPE,
          diffusion_training.QUICK_LATENT_RECIPE, diffusion_measure.train_latent_entry,
          description="flow prior on vae-sharp's 16-d latent codes, decoded by its decoder (chapter 08)"),
    Entry("encoder", "encoder", EncoderConfig, ENCODER_RECIPE, QUICK_ENCODER_RECIPE, contrastive.train_entry,
          description="the second ruler of chapter 04: a residual encoder trained without labels (SimCLR)"),
    Entry("colour-encoder", "encoder", EncoderConfig, COLOUR_ENCODER_RECIPE, QUICK_ENCODER_RECIPE,
          contrastive.train_entry, dataset=colour.NAME,
          description="the colour catalogue's second ruler: the SimCLR encoder"),
)}

# Recipes compared at an equal budget of steps by ``python -m prodlab bench gan`` (chapter 02's ablation).
# Every variant keeps an EMA of G, which only watches training: each run also gives its own no-EMA row.
BENCH_GAN_VARIANTS: dict[str, tuple[dict[str, Any], GANRecipe]] = {
    "article": ({}, GANRecipe(epochs=2, ema_decay=0.999)),
    "hinge-sn-ttur": ({"spectral_norm": True},
                      GANRecipe(epochs=2, loss="hinge", lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9), ema_decay=0.999)),
}
QUICK_BENCH_GAN_VARIANTS = {"article": ({}, QUICK_GAN_RECIPE)}


def entry(name: str) -> Entry:
    """The registry entry of ``name``; ``ModelError`` listing the models otherwise."""
    if name not in ENTRIES:
        raise checkpoints.ModelError(f"unknown model {name!r}; models: {', '.join(ENTRIES)}")
    return ENTRIES[name]


def generative_models(dataset: str | None = datasets.DEFAULT) -> list[str]:
    """The registered models that draw images (every one but the classifiers) of ``dataset`` (None: of any), so that
    one ruler measures them all."""
    return [name for name, e in ENTRIES.items() if e.generative and dataset in (None, e.dataset)]


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


def run_folder(dataset: str) -> Path:
    """Where the runs on ``dataset`` live: ``runs/`` for the default data set, ``runs/DATASET/`` otherwise."""
    return config.RUNS_DIR if dataset == datasets.DEFAULT else config.RUNS_DIR / dataset


def output_dir(name: str, recipe: Any, directory: Path | None, dataset: str | None = None) -> Path:
    """Where the checkpoint goes: ``directory`` if given; ``data/checkpoints`` for the shipped recipe on the
    model's own data set in full mode; otherwise the run folder, so an experiment never replaces a shipped model."""
    dataset = dataset or entry(name).dataset
    if directory is not None:
        return Path(directory)
    if recipe == entry(name).recipe and dataset == entry(name).dataset and not config.quick():
        return config.CHECKPOINT_DIR
    return run_folder(dataset) / run_name(name, recipe)


def train_and_save(
    name: str, recipe: Any = None, seed: int = 0, command: str | None = None, directory: Path | None = None,
    progress: bool = True, resume: bool = False, dataset: str | None = None, device: torch.device | None = None,
    threads: int | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """Train model ``name`` on ``dataset`` (default: its own) with ``recipe`` (default: :func:`default_recipe`),
    measure it, write its checkpoint with the recipe, the command and the code version; return (metrics, JSON
    path).

    ``resume=True`` continues an interrupted run from its last finished epoch (``runs/RUN/state.pt``). Ctrl-C
    raises ``runs.Interrupted`` naming the last complete epoch; nothing half-written is left. Under torchrun
    (``prodlab.distributed``) every rank trains and rank 0 alone writes: the others return ``None`` as the path.
    """
    e = entry(name)
    dataset = dataset or e.dataset
    recipe = default_recipe(name) if recipe is None else recipe
    overridden = recipe not in (e.recipe, e.quick)
    baseline = e.quick_baseline if recipe == e.quick else e.baseline
    run = runs.Run(run_name(name, recipe), run_folder(dataset))
    ctx = Context(name, e.config(data.spec(dataset)), dataset, seed, progress, resume, run,
                  with_baseline=not overridden, device=device, threads=threads)
    version = recipes.code_version()  # the code that trains, read before an edit made during a long run can creep in
    start, cpu_start = time.perf_counter(), time.process_time()
    with runs.interruptible(run):
        trained = e.train(recipe, baseline, ctx)
    if not distributed.is_main():
        return trained.metrics, None
    extra = {**trained.extra, "code_version": version, "train_torch_threads": threads or
             torch.get_num_threads(), "train_cpu_seconds": round(time.process_time() - cpu_start, 1)}
    _, meta_path = checkpoints.save(
        name, trained.model, dataset=dataset, recipe=recipes.recipe_to_json(name, recipe), seed=seed,
        command=command or f"python -m prodlab train {name} --seed {seed}", train_seconds=time.perf_counter() - start,
        metrics=trained.metrics, extra=extra, directory=output_dir(name, recipe, directory, dataset),
    )
    return trained.metrics, meta_path


def recipe_of(name: str, meta: dict[str, Any]) -> Any:
    """The recipe a checkpoint's JSON records, as the dataclass it was (``recipes.recipe_from_json``)."""
    return recipes.recipe_from_json(meta["recipe"], type(entry(name).recipe))
