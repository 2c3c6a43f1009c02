"""Training and measuring the text-to-product model (issue 26, notebook 10).

The model is assembled from two shipped parts, as Stable Diffusion is: the first stage (``colour-autoencoder``) and
CLIP in miniature's text encoder (``clip``), both frozen. Only the denoiser learns, with chapter 08's loop and step
(``training.diffusion``: ``diffusion_step``, warm-up and cosine decay, EMA) on the standardised latents of the
training photos, each with one of its phrasings tokenised; ``label_dropout`` of the prompts are replaced by the
empty prompt (prompt dropout) so that classifier-free guidance works. The combinations CLIP never saw (its recipe's
``held_out``) are left out here too, and the trainer refuses a text model that saw them: what the model draws for
"a green pair of trousers" then measures composition.

:func:`prompt_report` measures what matters to a shop: for balanced requests of every class, colour and pattern,
the ruler's reading of each attribute asked for, the seen and the held-out combinations apart; the CLIP score of the
samples against their prompts; FID, recall and the rest in both rulers' spaces; the sampling time per image.
:func:`guidance_sweep` trades fidelity against diversity.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prodlab import checkpoints, config, data, recipes, ruler, text
from prodlab.datasets import colour
from prodlab.models.autoencoder import Autoencoder
from prodlab.models.clip import CLIP
from prodlab.models.text_diffusion import TextDiffusion, TextDiffusionConfig
from prodlab.training import clip as clip_training
from prodlab.training.base import Context, Trained
from prodlab.training.diffusion import DiffusionRecipe, loss_curve, train_diffusion


@dataclass(frozen=True)
class TextDiffusionRecipe(DiffusionRecipe):
    """Chapter 08's diffusion recipe (``width``: the denoiser's; ``label_dropout``: prompt dropout) with the parts
    it is built from, the denoiser's cross-attention heads and the held-out combinations. Chapter 10."""

    first_stage: str = "colour-autoencoder"
    text_model: str = "clip"
    heads: int = 4
    held_out: tuple[tuple[str, str, str], ...] = clip_training.CLIPRecipe().held_out


def build(recipe: TextDiffusionRecipe, autoencoder: Autoencoder, clip: CLIP, latents: Tensor) -> TextDiffusion:
    """A fresh model: the recipe's denoiser, frozen copies of the first stage and of CLIP's text encoder, and the
    per-channel statistics of the training photos' latents ``latents`` (N x C x h x w). Chapter 10."""
    cfg = TextDiffusionConfig(autoencoder.cfg, clip.cfg, recipe.width, recipe.heads, recipe.objective)
    model = TextDiffusion(cfg)
    model.autoencoder.load_state_dict(autoencoder.state_dict())
    model.text_encoder.load_state_dict(clip.text_encoder.state_dict())
    model.z_mean.copy_(latents.mean((0, 2, 3))[:, None, None])
    model.z_std.copy_(latents.std((0, 2, 3))[:, None, None].clamp_min(1e-3))
    return model


def parts(recipe: TextDiffusionRecipe, dataset: str) -> tuple[Autoencoder, CLIP]:
    """The shipped first stage and text model the recipe names; ``ValueError`` when they are of another catalogue or
    the text model saw a combination the recipe holds out. Chapter 10."""
    autoencoder = checkpoints.load(recipe.first_stage, kind="autoencoder")
    clip = checkpoints.load(recipe.text_model, kind="clip")
    data.check_fits(autoencoder.cfg.image, dataset)
    seen_by_clip = recipes.recipe_from_json(checkpoints.read_meta(recipe.text_model)["recipe"],
                                            clip_training.CLIPRecipe).held_out
    if not set(recipe.held_out) <= set(seen_by_clip):
        raise ValueError(f"{recipe.text_model} was trained on some of the combinations held out here "
                         f"({sorted(set(recipe.held_out) - set(seen_by_clip))}): composition could not be measured")
    return autoencoder, clip


def training_set(recipe: TextDiffusionRecipe, autoencoder: Autoencoder, tokenizer: text.Tokenizer, dataset: str,
                 seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """The training photos (held-out combinations removed, the first ``train_limit``): their raw latent means under
    the first stage, their labels N x 3 and one drawn phrasing each, tokenised. Chapter 10."""
    spec = autoencoder.cfg.image
    labels = clip_training.catalogue_labels(dataset, "train")
    keep = ~clip_training.held_out_mask(spec, labels, recipe.held_out)
    images = data.load("train", dataset=dataset)[0][keep][: recipe.train_limit]
    labels = labels[keep][: recipe.train_limit]
    with config.one_thread():
        latents = autoencoder.latents(images)
    prompts = clip_training.draw_prompts(spec, labels, torch.Generator().manual_seed(seed))
    return latents, labels, tokenizer.encode(prompts)


def train_text_diffusion(recipe: TextDiffusionRecipe, ctx: Context) -> tuple[TextDiffusion, list[dict[str, float]]]:
    """Assemble the model from its shipped parts and train its denoiser in chapter 08's loop; return its moving
    average (CPU, eval mode) and the per-step history. Chapter 10."""
    autoencoder, clip = parts(recipe, ctx.dataset)
    latents, _, tokens = training_set(recipe, autoencoder, clip.cfg.tokenizer, ctx.dataset, ctx.seed)
    model = build(recipe, autoencoder, clip, latents)
    null = tuple(model.null_tokens(1)[0].tolist())
    z = (latents - model.z_mean) / model.z_std
    return train_diffusion(lambda: build(recipe, autoencoder, clip, latents), z, tokens, recipe, ctx.run, ctx.seed,
                           ctx.progress, ctx.resume, null_label=null, device=ctx.device, threads=ctx.threads)


def attribute_hits(r: ruler.Ruler, images: Tensor, asked: Tensor) -> Tensor:
    """bool N x 3: whether the ruler reads each image's class, colour and pattern as asked (``asked``: N x 3).
    Chapter 10."""
    preds = r.model.predict_attributes(data.as_batch(images, r.image))
    names = ("class", *r.image.attribute_names)
    return torch.stack([preds[name].cpu() == asked[:, j] for j, name in enumerate(names)], 1)


def clip_score(clip: CLIP, images: Tensor, prompts: list[str]) -> Tensor:
    """CLIPScore (Hessel et al. 2021) with our CLIP: ``100 * max(cos(image, prompt), 0)`` per image. Chapter 10."""
    return 100 * (clip.encode_images(images) * clip.encode_prompts(prompts)).sum(1).clamp_min(0)


def attribute_table(hits: Tensor, unseen: Tensor) -> dict[str, dict[str, float]]:
    """The share of hits per attribute (class, colour, pattern, all three) over the seen and the held-out
    requests. Chapter 10."""
    cols = {"class": hits[:, 0], "colour": hits[:, 1], "pattern": hits[:, 2], "all": hits.all(1)}
    return {group: {"n": int(rows.sum()), **{k: round(float(v[rows].float().mean()), 4) for k, v in cols.items()}}
            for group, rows in (("seen", ~unseen), ("held_out", unseen)) if rows.any()}


def held_out_rows(hits: Tensor, asked: Tensor, model: TextDiffusion, held_out: tuple[tuple[str, str, str], ...]
                  ) -> list[dict[str, Any]]:
    """Per held-out combination rule ("Trouser colour green"), the share of hits per attribute. Chapter 10."""
    rows = []
    for rule in held_out:
        mine = clip_training.held_out_mask(model.cfg.image, asked, (rule,))
        rows.append({"held_out": " ".join(rule), "n": int(mine.sum()),
                     **{k: round(float(hits[mine, j].float().mean()), 4)
                        for j, k in enumerate(("class", "colour", "pattern"))}})
    return rows


def prompt_report(name: str, model: TextDiffusion, n: int, seed: int, recipe: TextDiffusionRecipe,
                  dataset: str = colour.NAME, guidance: float | None = None) -> dict[str, Any]:
    """``n`` samples for balanced requests (every class, colour and pattern equally often, combinations shuffled),
    measured: attribute accuracy by the ruler (seen and held-out combinations apart, each held-out rule alone), the
    CLIP score (by the recipe's text model) against the prompts, FID, recall and the rest in both rulers' spaces,
    and the sampling time per image on one thread. The held-out combinations are the recipe's. Chapter 10."""
    if guidance is not None:
        model = with_guidance(model, guidance)
    r, second = ruler.load(dataset=dataset), ruler.load_second(dataset)
    clip, held_out = checkpoints.load(recipe.text_model, kind="clip"), recipe.held_out
    asked = checkpoints.requests(model, n, seed)
    start = time.process_time()
    with config.one_thread():
        images, _ = checkpoints.generate(name, n, seed, model=model, labels=asked, batch_size=100)
    ms = 1000 * (time.process_time() - start) / n
    hits = attribute_hits(r, images, asked)
    unseen = clip_training.held_out_mask(model.cfg.image, asked, held_out)
    report = ruler.samples_report(images, asked[:, 0], asked, model.cfg.image, r, seed, second=second)
    return {"n": n, "guidance": model.cfg.guidance, "steps": model.cfg.steps, "sampler": model.cfg.sampler,
            "ms_per_image": round(ms, 2), "attributes": attribute_table(hits, unseen),
            "held_out_rules": held_out_rows(hits, asked, model, held_out),
            "clip_score": round(float(clip_score(clip, images, model.captions(asked)).mean()), 2),
            **{k: report[k] for k in ("fid", "kid", "precision", "recall", "density", "coverage")},
            "second_ruler": {k: report["second_ruler"][k] for k in ("ruler", "fid", "precision", "recall")}
            if "second_ruler" in report else None}


def real_clip_score(clip: CLIP, dataset: str = colour.NAME) -> float:
    """The CLIP score of the real test photos against their own captions: what a generator's score is read
    against. Measured once per model, not at every guidance scale. Chapter 10."""
    labels = clip_training.catalogue_labels(dataset, "test")
    captions = colour.captions(clip.cfg.image, labels[:, 0], labels[:, 1:])
    return round(float(clip_score(clip, data.load("test", dataset=dataset)[0], captions).mean()), 2)


def with_guidance(model: TextDiffusion, guidance: float) -> TextDiffusion:
    """The same weights with another default guidance scale (the config is frozen: a copy with them loaded).
    Chapter 10."""
    other = TextDiffusion(dataclasses.replace(model.cfg, guidance=guidance))
    other.load_state_dict(model.state_dict())
    return other.eval()


GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)


def guidance_sweep(name: str, model: TextDiffusion, n: int, seed: int, recipe: TextDiffusionRecipe,
                   dataset: str = colour.NAME, scales: tuple[float, ...] = GUIDANCE_SCALES) -> list[dict[str, Any]]:
    """Fidelity (attributes read as asked, CLIP score) against diversity (recall, coverage) and FID, at each
    guidance scale, ``n`` samples each. Chapter 10."""
    rows = []
    for w in scales:
        rep = prompt_report(name, model, n, seed, recipe, dataset, w)
        rows.append({"guidance": w, **{f"{g}_{k}": v for g, row in rep["attributes"].items()
                                       for k, v in row.items() if k != "n"},
                     **{k: rep[k] for k in ("clip_score", "fid", "recall", "coverage", "ms_per_image")}})
    return rows


def train_entry(recipe: TextDiffusionRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train text-diffusion``: assemble and train the model, then measure it (:func:`prompt_report` on 5,000
    samples, :func:`guidance_sweep` on 500 per scale; quick mode far fewer). Chapter 10."""
    model, history = train_text_diffusion(recipe, ctx)
    if not ctx.measures:
        return Trained(model, {}, {})
    with config.threads(ctx.threads):
        measured = prompt_report(ctx.name, model, config.budget(5000, 100), ctx.seed, recipe, ctx.dataset)
        measured["clip_score_real"] = real_clip_score(checkpoints.load(recipe.text_model, kind="clip"), ctx.dataset)
        sweep = guidance_sweep(ctx.name, model, config.budget(500, 20), ctx.seed, recipe, ctx.dataset,
                               GUIDANCE_SCALES if not config.quick() else GUIDANCE_SCALES[:2])
    extra = {"history": loss_curve(history), "train_cpu_seconds_steps": history[-1]["cpu_seconds"],
             "parameters": sum(p.numel() for p in model.net.parameters()), "guidance_sweep": sweep}
    return Trained(model, measured, extra)
