"""Training CLIP in miniature on a catalogue's photos and words (issue 26, notebook 10), and measuring what it learned.

Every product of the colour catalogue has a class, a colour and a pattern, and so its words: each step draws, for
every photo of the batch, one of its :func:`colour.phrasings` ("a blue top" or "a blue t-shirt"), so the text
encoder learns that a shopper's word and the catalogue's mean the same products. :func:`clip_step` is one step (the
similarity matrix, :func:`clip_loss` with every product of the same class, colour and pattern as a positive, the
update), what notebook 10 runs by hand; :class:`CLIPFamily` runs it in the workbook's one training loop.

Combinations the recipe holds out (``held_out``: a class with a colour or a pattern, "no green trousers") are removed
from the training photos: what the model then does with "a green pair of trousers" measures whether it composes the
words it learned apart. The measures (:func:`text_to_image`, :func:`image_to_text`) report seen and held-out
combinations side by side.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prodlab import data, datasets, runs, text
from prodlab.datasets import colour
from prodlab.datasets.spec import ImageSpec
from prodlab.models.clip import CLIP, CLIPConfig, clip_loss
from prodlab.training import loop
from prodlab.training.base import Context, Trained, train_then_measure


@dataclass(frozen=True)
class CLIPRecipe:
    """How the text-image model is trained: AdamW, batches of ``batch_size`` photos with one phrasing each, and the
    combinations never shown (class name, attribute, value). Chapter 10 (notebooks/10_text_to_product.ipynb)."""

    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    train_limit: int | None = None
    held_out: tuple[tuple[str, str, str], ...] = (("Trouser", "colour", "green"), ("Bag", "pattern", "stripes"),
                                                  ("Dress", "colour", "yellow"), ("Sneaker", "pattern", "dots"))


def catalogue_labels(dataset: str, split: str) -> Tensor:
    """int64 N x 3 (class, then each attribute in the spec's order) of a split of a catalogue with attributes.
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    attributes = datasets.attributes(dataset, split)
    if attributes is None:
        raise ValueError(f"catalogue {dataset!r} stores no attributes: a text model needs words for its products")
    return torch.cat([data.load(split, dataset=dataset)[1][:, None], attributes], 1)


def combinations(spec: ImageSpec) -> Tensor:
    """Every (class, colour, pattern) the spec can name, int64 M x 3, in order. Chapter 10."""
    sizes = (spec.n_classes, *(len(values) for _, values in spec.attributes))
    return torch.tensor(list(itertools.product(*(range(n) for n in sizes))))


def words_of(spec: ImageSpec, row: list[int]) -> tuple[str, ...]:
    """The phrasings of one labelled product (class, colour, pattern indices). Chapter 10."""
    values = [spec.class_names[row[0]], *(vals[i] for (_, vals), i in zip(spec.attributes, row[1:], strict=True))]
    return colour.phrasings(*values)


def catalogue_tokenizer(spec: ImageSpec) -> text.Tokenizer:
    """The tokenizer of every phrasing of every combination the spec names. Chapter 10."""
    return text.Tokenizer.from_texts(p for row in combinations(spec).tolist() for p in words_of(spec, row))


def held_out_mask(spec: ImageSpec, labels: Tensor, held_out: tuple[tuple[str, str, str], ...]) -> Tensor:
    """bool N: which labelled products (N x 3) belong to a held-out combination. Chapter 10."""
    names = ("class", *spec.attribute_names)
    out = torch.zeros(len(labels), dtype=torch.bool)
    for class_name, attribute, value in held_out:
        column = names.index(attribute)
        wanted = spec.class_names.index(class_name), spec.values(attribute).index(value)
        out |= (labels[:, 0] == wanted[0]) & (labels[:, column] == wanted[1])
    return out


def draw_prompts(spec: ImageSpec, labels: Tensor, generator: torch.Generator) -> list[str]:
    """One phrasing per labelled product, drawn uniformly among its phrasings. Chapter 10."""
    rows = [words_of(spec, row) for row in labels.tolist()]
    picks = torch.randint(0, 1 << 30, (len(rows),), generator=generator).tolist()
    return [options[pick % len(options)] for options, pick in zip(rows, picks, strict=True)]


def same_product(labels: Tensor) -> Tensor:
    """bool N x N: pairs with the same class, colour and pattern (the positives of :func:`clip_loss`). Chapter 10."""
    return (labels[:, None, :] == labels[None, :, :]).all(-1)


def clip_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, tokens: Tensor,
              same: Tensor) -> dict[str, float]:
    """One step: the similarity logits of the batch's photos and prompts, the loss, the update. Returns the loss and
    the share of photos whose most similar prompt describes them. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    logits = model(images, tokens)
    loss = clip_loss(logits, same)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    hits = same.gather(1, logits.detach().argmax(1, keepdim=True))
    return {"loss": float(loss.detach()), "accuracy": float(hits.float().mean())}


class CLIPFamily(loop.RecipeFamily):
    """The text-image model as the training loop sees it (chapter 10): AdamW with a one-cycle learning rate,
    :func:`clip_step` per batch of photos and their drawn phrasings, the held-out combinations left out of the data.
    Under torchrun each rank contrasts its own slice of the batch."""

    per_step_history = False

    def build(self, device: torch.device) -> None:
        self.optimise(CLIP(self.cfg).to(device), device, len(self._kept()[1]), self.recipe.lr)

    def _kept(self) -> tuple[Tensor, Tensor]:
        """Which training photos it learns from (bool N: not of a held-out combination) and their labels (up to
        ``train_limit``)."""
        labels = catalogue_labels(self.dataset, "train")
        keep = ~held_out_mask(self.cfg.image, labels, self.recipe.held_out)
        return keep, labels[keep][: self.recipe.train_limit]

    def data(self) -> tuple[Tensor, Tensor]:
        """The training photos in [0, 1] and their labels (N x 3), the held-out combinations left out."""
        keep, labels = self._kept()
        images = data.load("train", dataset=self.dataset)[0][keep][: self.recipe.train_limit]
        return data.to_float(images), labels

    def step(self, x: Tensor, y: Tensor | None, state: loop.State) -> dict[str, float]:
        assert y is not None  # data() always gives labels
        tokens = self.cfg.tokenizer.encode(draw_prompts(self.cfg.image, y.cpu(), state.generator)).to(x.device)
        out = clip_step(self.net, self.optimizers["optimizer"], x, tokens, same_product(y))
        self.optimizers["schedule"].step()
        return {**out, "scale": float(self.model.scale.detach())}

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        return f"loss {means['loss']:.4f}, batch accuracy {means['accuracy']:.4f}, scale {means['scale']:.1f}"


def train_clip(cfg: CLIPConfig, recipe: CLIPRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
               resume: bool = False, device: torch.device | None = None, dataset: str = colour.NAME,
               threads: int | None = None) -> tuple[CLIP, list[dict[str, float]]]:
    """Train the text-image model on ``dataset``'s photos and words in the workbook's training loop; return it (eval
    mode, on the CPU) and its per-epoch history. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    data.check_fits(cfg.image, dataset)
    family = CLIPFamily(cfg, recipe, dataset, seed)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    return family.model.cpu().eval(), state.epochs


@torch.no_grad()
def caption_embeddings(model: CLIP) -> tuple[Tensor, Tensor]:
    """Every combination the model's spec names (M x 3) and the unit embedding of its caption (M x D).
    Chapter 10."""
    spec = model.cfg.image
    combos = combinations(spec)
    return combos, model.encode_prompts(colour.captions(spec, combos[:, 0], combos[:, 1:]))


def combination_index(spec: ImageSpec, labels: Tensor) -> Tensor:
    """int64 N: each labelled product's row in :func:`combinations` (the labels read as a mixed-radix number).
    Chapter 10."""
    sizes = (spec.n_classes, *(len(values) for _, values in spec.attributes))
    index = torch.zeros(len(labels), dtype=torch.long)
    for column, size in enumerate(sizes):
        index = index * size + labels[:, column]
    return index


def photo_vectors(model: CLIP, dataset: str = colour.NAME, split: str = "test") -> Tensor:
    """The unit vectors of a split's photos (N x D), what both measures compare the captions with. Chapter 10."""
    return model.encode_images(data.load(split, dataset=dataset)[0])


def image_to_text(model: CLIP, dataset: str = colour.NAME, split: str = "test",
                  ks: tuple[int, ...] = (1, 5, 10), vectors: Tensor | None = None) -> dict[str, float]:
    """Image -> text over every caption the catalogue can write: each photo is read as the combination whose caption
    is most similar (zero-shot), and the share of photos whose class, colour and pattern are read right is given per
    attribute (as the ruler's accuracies are); ``recall_at_k``: the share whose own caption is among the ``k`` most
    similar. ``vectors``: the split's photos already encoded (:func:`photo_vectors`). Chapter 10."""
    combos, captions = caption_embeddings(model)
    labels = catalogue_labels(dataset, split)
    sims = (photo_vectors(model, dataset, split) if vectors is None else vectors) @ captions.T
    read = combos[sims.argmax(1)]
    names = ("class", *model.cfg.image.attribute_names)
    own = sims.gather(1, combination_index(model.cfg.image, labels)[:, None])
    rank = (sims > own).sum(1)  # captions more similar than the photo's own
    return {**{name: float((read[:, i] == labels[:, i]).float().mean()) for i, name in enumerate(names)},
            **{f"recall_at_{k}": float((rank < k).float().mean()) for k in ks}}


def text_to_image(model: CLIP, held_out: tuple[tuple[str, str, str], ...], dataset: str = colour.NAME,
                  split: str = "test", k: int = 10, vectors: Tensor | None = None) -> dict[str, dict[str, float]]:
    """Text -> image search: each combination's caption finds its ``k`` most similar photos of ``split``; the share
    of them with the caption's class, class and colour, and all three, averaged over the seen and over the held-out
    combinations (those present in the split); ``vectors`` as for :func:`image_to_text`. Chapter 10."""
    combos, captions = caption_embeddings(model)
    labels = catalogue_labels(dataset, split)
    vectors = photo_vectors(model, dataset, split) if vectors is None else vectors
    found = labels[(captions @ vectors.T).topk(k, dim=1).indices]
    match = found == combos[:, None, :]  # M x k x 3
    shares = {"class": match[..., 0], "class_colour": match[..., :2].all(-1), "all": match.all(-1)}
    present = (combos[:, None, :] == labels[None, :, :]).all(-1).any(1)  # the split holds a photo of it
    unseen = held_out_mask(model.cfg.image, combos, held_out)
    return {group: {key: float(v.float().mean(1)[present & rows].mean()) for key, v in shares.items()}
            for group, rows in (("seen", ~unseen), ("held_out", unseen)) if (present & rows).any()}


def train_entry(recipe: CLIPRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train clip``: train the text-image model on the context's catalogue and measure it both ways: image -> text
    (:func:`image_to_text`) and text -> image (:func:`text_to_image`, seen and held-out combinations apart).
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return train_then_measure(train_clip, recipe, ctx, lambda model: both_ways(model, recipe.held_out, ctx.dataset))


def both_ways(model: CLIP, held_out: tuple[tuple[str, str, str], ...], dataset: str) -> dict[str, float]:
    """:func:`image_to_text` and :func:`text_to_image` (seen and held-out combinations apart) as one flat row, the
    test photos encoded once for both. Chapter 10."""
    vectors = photo_vectors(model, dataset)
    read = image_to_text(model, dataset, vectors=vectors)
    found = text_to_image(model, held_out, dataset, vectors=vectors)
    return {**{f"image_to_text_{k}": v for k, v in read.items()},
            **{f"text_to_image_{group}_{k}": v for group, row in found.items() for k, v in row.items()}}
