"""Text to product (chapter 10, issue 26): the helpers and figures of notebooks/10_text_to_product.ipynb.

The notebook opens the three parts of a text-to-image product generator (CLIP in miniature, the first stage, the
denoiser with cross-attention), runs each by hand, and reads the shipped models' measures from their checkpoints;
the figures are drawn here: search by words, the first stage's round trip, the cross-attention of a prompt's words
over the latent grid, products drawn per prompt, the guidance sweep, edits by words, and the table that puts the
miniature beside the large models; and one cached analysis (:func:`pattern_results`): why the pattern is the
generator's weakest attribute.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from prodlab import cache, checkpoints, config, data, plotting, recipes, ruler, runs, text
from prodlab.datasets import colour, fashion_mnist
from prodlab.edit import by_prompt
from prodlab.models.clip import CLIP
from prodlab.models.text_diffusion import TextDiffusion
from prodlab.search import by_text
from prodlab.training import clip as clip_training
from prodlab.training import registry
from prodlab.training import text_diffusion as td_training
from prodlab.training.base import Context

# What is public about the large models the miniature copies (parameters, training data, compute), with the source
# of each number: the model cards and papers. A row is what its source says, never an estimate of ours.
LARGE_MODELS = (
    {"model": "CLIP ViT-L/14 (Radford et al. 2021)", "parameters": "428 M (text 123 M)",
     "data": "400 M image-text pairs (WIT)", "compute": "12 days on 256 V100 GPUs",
     "source": "the CLIP paper, sections 2.4-2.5"},
    {"model": "Stable Diffusion v1 (Rombach et al. 2022)", "parameters": "860 M U-Net, 123 M text, 84 M autoencoder",
     "data": "LAION-2B-en, then LAION-Aesthetics subsets", "compute": "150,000 A100 GPU-hours",
     "source": "the stable-diffusion-v1 model card"},
    {"model": "Imagen (Saharia et al. 2022)", "parameters": "2 B base U-Net, frozen T5-XXL text encoder (4.6 B)",
     "data": "about 860 M image-text pairs", "compute": "TPU v4 pods (hours not published)",
     "source": "the Imagen paper, section 4 and appendix"},
)


def search_figure(prompts: list[str], dataset: str = colour.NAME, k: int = 8) -> Figure:
    """The ``k`` catalogue photos nearest to each prompt in CLIP's space, one row per prompt."""
    images = data.load("train", dataset=dataset)[0]
    rows = [images[[hit["id"] for hit in by_text.search_text(p, dataset, k)]] for p in prompts]
    return plotting.labelled_rows(rows, prompts, label_width=2.4)


def round_trip(model: TextDiffusion, n: int = 10, dataset: str = colour.NAME) -> Figure:
    """Test photos, their latent grids (the first channel) and the first stage's reconstructions."""
    x = data.to_float(data.load("test", dataset=dataset)[0][:n])
    z = model.autoencoder.latents(x)
    grid = z[:, :1]
    grid = (grid - grid.amin((2, 3), keepdim=True)) / (grid.amax((2, 3), keepdim=True)
                                                      - grid.amin((2, 3), keepdim=True)).clamp_min(1e-6)
    return plotting.labelled_rows([x, grid.expand(-1, 3, -1, -1), model.autoencoder.reconstruct(x)],
                                  ["photo", f"latent {' x '.join(map(str, z.shape[1:]))}\n(channel 1)",
                                   "reconstruction"], label_width=1.8)


def word_attention(model: TextDiffusion, photo: torch.Tensor, prompt: str, t: float = 0.5, seed: int = 0
                   ) -> tuple[list[str], torch.Tensor]:
    """The words of ``prompt`` (and the end token) and how much each latent position attends to each, averaged over
    the cross-attention layers (each brought to the latent grid) and their heads: words x h x w, for the photo's
    latent noised to time ``t`` (:func:`word_attentions` of one photo)."""
    return word_attentions(model, photo[None], [prompt], t, seed)[0]


def word_attentions(model: TextDiffusion, photos: torch.Tensor, prompts: list[str], t: float = 0.5, seed: int = 0
                    ) -> list[tuple[list[str], torch.Tensor]]:
    """:func:`word_attention` for a batch of photos, each with its prompt, in one forward pass: every latent noised
    with the same noise of ``seed``, so that a photo's maps do not depend on the batch it came in."""
    tokens = model.cfg.tokenizer.encode(prompts)
    z0 = model.to_latents(photos)
    noise = torch.randn(z0.shape[1:], generator=torch.Generator().manual_seed(seed))
    z_t = (1 - t) * z0 + t * noise
    weights = model.cross_attention(z_t, torch.full((len(z0),), t), tokens).mean(0)  # N x L x h x w
    rows = []
    for row, maps in zip(tokens, weights, strict=True):
        n_words = int((row > 0).sum())
        rows.append(([model.cfg.tokenizer.words[i] for i in row[:n_words].tolist()], maps[:n_words]))
    return rows


WORD_ROLES = ("article", "product", "colour", "pattern", "end")  # what each word of a caption names


def word_role(word: str) -> str:
    """The role of a caption's word: the article, the product's noun phrase, its colour, its pattern, the end token."""
    if word in ("a", "an"):
        return "article"
    if word == text.END:
        return "end"
    if word in dict(colour.COLOURS):
        return "colour"
    return "pattern" if word in colour.ADJECTIVES.values() else "product"


def attention_by_region(model: TextDiffusion, n: int, t: float = 0.5) -> dict[str, dict[str, float]]:
    """For the first ``n`` test photos with their captions (:func:`word_attention` at time ``t``): the share of a
    latent position's cross-attention that each role of word receives, averaged over the positions on the product
    and over those on the background (a position is on the product when most of its pixels are, by the
    catalogue's own silhouette), in one forward pass (:func:`word_attentions`). Each region's shares sum to one."""
    photos = data.to_float(data.load("test", dataset=colour.NAME)[0][:n])
    labels = clip_training.catalogue_labels(colour.NAME, "test")[:n]
    _, shape = colour.silhouette(fashion_mnist.load("test")[0][:n])
    _, h, w = model.cfg.first_stage.latent_shape
    on = F.adaptive_avg_pool2d(shape, (h, w))[:, 0] > 0.5  # N x h x w
    totals = {region: torch.zeros(len(WORD_ROLES)) for region in ("product", "background")}
    for (words, maps), mask in zip(word_attentions(model, photos, model.captions(labels), t), on, strict=True):
        for word, m in zip(words, maps, strict=True):
            role = WORD_ROLES.index(word_role(word))
            totals["product"][role] += m[mask].mean() / n
            totals["background"][role] += m[~mask].mean() / n
    return {region: dict(zip(WORD_ROLES, v.tolist(), strict=True)) for region, v in totals.items()}


def attention_figure(words: list[str], maps: torch.Tensor, photo: torch.Tensor) -> Figure:
    """The photo, then one heat map per word: the share of each latent position's cross-attention it receives."""
    fig = plotting.new_figure(1.3 * (len(words) + 1), 1.6)
    axes = fig.subplots(1, len(words) + 1)
    plotting.show_image(axes[0], plotting.as_numpy(photo[None])[0], "photo")
    for ax, word, m in zip(axes[1:], words, maps, strict=True):
        ax.imshow(m.numpy(), cmap="magma", vmin=0, vmax=float(maps.max()))
        ax.set_title(word, fontsize=9)
        ax.axis("off")
    return plotting.finish(fig)


def prompt_rows(model: TextDiffusion, prompts: list[str], per_prompt: int = 8, seed: int = 0,
                negative_prompt: str = "", guidance: float | None = None) -> Figure:
    """``per_prompt`` products drawn for each prompt, one row each (the same noise in every row)."""
    rows = [model.draw([p] * per_prompt, torch.Generator().manual_seed(seed), negative_prompt, guidance=guidance)
            for p in prompts]
    return plotting.labelled_rows(rows, prompts, label_width=2.4)


def attribute_lines(metrics: dict[str, Any]) -> list[str]:
    """The measured attribute accuracy, seen and held-out combinations, one line each, from a checkpoint's metrics."""
    return [f"{group:9s} n {row['n']:5d}  class {row['class']:.3f}  colour {row['colour']:.3f}  "
            f"pattern {row['pattern']:.3f}  all three {row['all']:.3f}" for group, row in metrics["attributes"].items()]


def guidance_figure(sweep: list[dict[str, Any]]) -> Figure:
    """Fidelity (share of samples with all three attributes as asked, seen and held-out) and diversity (recall,
    coverage) against the guidance scale."""
    w = [row["guidance"] for row in sweep]
    fig = plotting.new_figure(8, 3)
    left, right = fig.subplots(1, 2)
    for key, label in (("seen_all", "seen combinations"), ("held_out_all", "held-out combinations")):
        left.plot(w, [row[key] for row in sweep], "o-", label=label)
    left.set(xlabel="guidance scale w", ylabel="all three attributes as asked", title="fidelity", ylim=(0, 1.02))
    left.legend(fontsize=8)
    for key in ("recall", "coverage"):
        right.plot(w, [row[key] for row in sweep], "o-", label=key)
    right.set(xlabel="guidance scale w", title="diversity", ylim=(0, 1.02))
    right.legend(fontsize=8)
    return plotting.finish(fig)


def edit_rows(model: TextDiffusion, n: int = 6, first: int = 500, dataset: str = colour.NAME) -> Figure:
    """Test photos recoloured and re-patterned by a new prompt (SDEdit) and their centre redrawn from a prompt
    (inpainting), one row each."""
    spec = model.cfg.image
    x = data.to_float(data.load("test", dataset=dataset)[0][first : first + n])
    labels = clip_training.catalogue_labels(dataset, "test")[first : first + n]
    recoloured, repatterned = labels.clone(), labels.clone()
    recoloured[:, 1] = (labels[:, 1] + 3) % len(spec.values("colour"))
    repatterned[:, 2] = (labels[:, 2] + 1) % len(spec.values("pattern"))
    missing = torch.zeros(n, spec.height, spec.width, dtype=torch.bool)
    missing[:, spec.height // 4 : 3 * spec.height // 4, spec.width // 4 : 3 * spec.width // 4] = True
    rows = [x, by_prompt.sdedit(model, x, model.captions(recoloured)),
            by_prompt.sdedit(model, x, model.captions(repatterned)), x * ~missing[:, None],
            by_prompt.inpaint(model, x, missing, model.captions(recoloured))]
    names = ["photo", "new colour\n(SDEdit)", "new pattern\n(SDEdit)", "centre hidden", "centre drawn,\nnew colour"]
    return plotting.labelled_rows(rows, names, label_width=1.5)


def our_row(name: str = "text-diffusion") -> dict[str, str]:
    """The miniature's row of the comparison table, from the checkpoints' JSON and the catalogue."""
    meta, clip_meta = checkpoints.read_meta(name), checkpoints.read_meta("clip")
    first = checkpoints.read_meta(meta["recipe"]["fields"]["first_stage"])
    model = checkpoints.load(name, kind="text-diffusion")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    minutes = sum(m["train_cpu_seconds"] for m in (meta, clip_meta, first)) / 60
    images = len(data.load("train", dataset=meta["dataset"])[1])
    return {"model": "ours: clip + colour-autoencoder + text-diffusion",
            "parameters": f"{count(model.net) / 1e6:.2f} M denoiser, {count(model.text_encoder) / 1e6:.2f} M text, "
                          f"{count(model.autoencoder) / 1e6:.2f} M autoencoder",
            "data": f"{images:,} synthetic photos, {len(clip_training.combinations(model.cfg.image))} captions",
            "compute": f"{minutes:.0f} CPU-minutes, one thread", "source": "this notebook"}


def live_model(epochs: int = 3, limit: int = 1024, seed: int = 0) -> tuple[TextDiffusion, list[dict[str, float]]]:
    """A fresh denoiser on the shipped parts, trained for a few seconds on ``limit`` photos (the live run)."""
    recipe = td_training.TextDiffusionRecipe(epochs=epochs, batch_size=64, train_limit=limit, warmup_steps=4)
    entry = registry.entry("text-diffusion")
    run = runs.Run("text-diffusion-live", registry.run_folder(entry.dataset))
    ctx = Context(entry.name, entry.config(data.spec(entry.dataset)), entry.dataset, seed, progress=False,
                  resume=False, run=run, with_baseline=False)
    return td_training.train_text_diffusion(recipe, ctx)


# Why is the pattern the weakest attribute? (issue 26) :func:`pattern_results` measures it three ways: which pattern
# the ruler reads for each asked (seen requests), from which point of the path a real dotted photo keeps its dots when
# the model redraws it by its own caption (SDEdit from t), and how the ruler and CLIP read blurred dotted photos.
STARTS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)  # SDEdit starts; 0: the first stage's round trip, 1: pure noise
BLURS = (0.0, 0.4, 0.6, 0.8)  # Gaussian blur sigmas in pixels
PATTERN = colour.PATTERNS.index("dots")  # the pattern the analysis follows along the path and under blur


def pattern_column(spec_names: tuple[str, ...]) -> int:
    """The column of the pattern in a request (class, then each attribute)."""
    return 1 + spec_names.index("pattern")


def confusion(asked: Tensor, read: Tensor, size: int) -> Tensor:
    """int64 ``size`` x ``size``: row = the value asked for, column = the value read."""
    return torch.bincount(asked * size + read, minlength=size * size).reshape(size, size)


def clip_patterns(clip: CLIP, images: Tensor) -> Tensor:
    """CLIP's zero-shot reading of each image's pattern: that of the most similar caption of the catalogue."""
    combos, captions = clip_training.caption_embeddings(clip)
    return combos[(clip.encode_images(images) @ captions.T).argmax(1), pattern_column(clip.cfg.image.attribute_names)]


def ruler_patterns(r: ruler.Ruler, images: Tensor) -> Tensor:
    """The ruler's reading of each image's pattern."""
    return r.model.predict_attributes(data.as_batch(images, r.image))["pattern"].cpu()


@cache.computation("text-patterns", "the patterns text-diffusion draws, where on its path a pattern is decided, "
                   "and how blur reads", dataset=colour.NAME)
def pattern_results() -> dict[str, Any]:
    """The three measures of the module docstring: 1,000 balanced requests (quick mode 100) and the first 300 dotted
    test photos (quick mode 40), seed 0, the shipped model's sampler and guidance."""
    model = checkpoints.load("text-diffusion", kind="text-diffusion")
    recipe = recipes.recipe_from_json(checkpoints.read_meta("text-diffusion")["recipe"],
                                      td_training.TextDiffusionRecipe)
    r, clip = ruler.load(dataset=colour.NAME), checkpoints.load(recipe.text_model, kind="clip")
    col = pattern_column(model.cfg.image.attribute_names)
    asked = checkpoints.requests(model, config.budget(1000, 100), 0)
    with config.one_thread():
        images, _ = checkpoints.generate("text-diffusion", len(asked), 0, model=model, labels=asked, batch_size=100)
    seen = ~clip_training.held_out_mask(model.cfg.image, asked, recipe.held_out)
    table = confusion(asked[seen, col], ruler_patterns(r, images)[seen], len(colour.PATTERNS))
    labels = clip_training.catalogue_labels(colour.NAME, "test")
    dotted = (labels[:, col] == PATTERN).nonzero()[:, 0][: config.budget(300, 40)]
    photos, prompts = data.to_float(data.load("test", dataset=colour.NAME)[0][dotted]), model.captions(labels[dotted])
    with config.one_thread():
        kept = [float((ruler_patterns(r, by_prompt.sdedit(model, photos, prompts, t) if t > 0 else
                                      model.to_images(model.to_latents(photos))) == PATTERN).float().mean())
                for t in STARTS]
    from torchvision.transforms.functional import gaussian_blur  # seconds to import: only where it is used

    blurred = [photos if s == 0 else gaussian_blur(photos, 5, s) for s in BLURS]
    return {"n": len(asked), "photos": len(dotted), "confusion": table.tolist(), "starts": list(STARTS),
            "kept": kept, "blurs": list(BLURS),
            "ruler_blur": [float((ruler_patterns(r, b) == PATTERN).float().mean()) for b in blurred],
            "clip_blur": [float((clip_patterns(clip, b) == PATTERN).float().mean()) for b in blurred]}


def confusion_markdown(result: dict[str, Any]) -> str:
    """The confusion table as Markdown, each row as shares of its requests, the diagonal (read as asked) in bold."""
    lines = ["| asked \\ read | " + " | ".join(colour.PATTERNS) + " | requests |",
             "|---|" + "---:|" * (len(colour.PATTERNS) + 1)]
    for i, row in enumerate(result["confusion"]):
        shares = [f"{v / max(sum(row), 1):.2f}" for v in row]
        shares[i] = f"**{shares[i]}**"
        lines.append(f"| {colour.PATTERNS[i]} | " + " | ".join(shares) + f" | {sum(row)} |")
    return "\n".join(lines)
