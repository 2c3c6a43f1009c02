"""Training the second ruler of chapter 04 without labels: SimCLR (Chen et al. 2020), and measuring what it learned.

SimCLR makes two random *views* of every image of a batch (:func:`two_views`), encodes the 2N views, and asks each
view to pick out its partner among the 2N - 1 others (:func:`nt_xent`, the NT-Xent or InfoNCE loss). Nothing says
which images are shirts: what the encoder learns is what survives the augmentations, so choosing them chooses the
feature space. Ours keep what the metrics must see and vary what they must not:

* random resized crops (a share ``crop_scale`` to 1 of the area, aspect ratio up to ``aspect``, anywhere in the
  image, resized back): framing and size vary between photos of one product; the silhouette, the pattern and the
  sharpness of edges stay (no blur augmentation: a ruler blind to blur could not tell a blurry generator);
* brightness and contrast jitter, the same factors on every channel: another exposure of the same product (a
  colour moves towards or away from the image's mean grey, its hue stays). It is what stops the two views from
  being matched by their brightness histograms alone (SimCLR's colour distortion plays that role on photographs);
* no hue, saturation or greyscale augmentation: on the colour catalogue the colour is an attribute the metrics
  must see (a generator asked for a red dress must be told apart from one that draws blue dresses), so the space
  must not learn to ignore it; the k-NN accuracy of each attribute (:func:`representation_report`) checks it did not.
  Only a small gain of each channel of its own (``channel_gain``, 10 % for the colour catalogue) hides each
  product's exact shade, an identity cue that says nothing of the product, without turning one named colour into
  another;
* no horizontal flip by default (``flip``): the catalogue photographs shoes toe to the left
  (``data.mirror_asymmetry``), so a mirrored shoe is a product it never shows, and a ruler should notice one.

:func:`contrastive_step` is one step (two views, loss, update) so chapter 04 can run it by hand; :class:`EncoderFamily`
runs it in the workbook's one training loop (``prodlab.training.loop``) with AdamW and a one-cycle learning rate.
The labels are never read in training; after it, :func:`representation_report` measures the space with them: the
k-NN accuracy (k = 10, cosine) of the test images against the training images, and a linear probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prodlab import config, data, datasets, runs
from prodlab.models.encoder import ContrastiveEncoder, EncoderConfig
from prodlab.training import loop
from prodlab.training.base import Context, Trained, train_then_measure

K_NEIGHBOURS = 10
MONITOR = (2000, 1000)  # training images (the neighbours) and test images of the k-NN accuracy after each epoch


@dataclass(frozen=True)
class ContrastiveRecipe:
    """How the encoder is trained (chapter 04): SimCLR's loss at ``temperature``, AdamW with a one-cycle learning
    rate peaking at ``lr``, and the strengths of the augmentations of :func:`two_views`."""

    epochs: int = 5
    batch_size: int = 128  # images per step: 2 x 128 views, each with 254 negatives
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    crop_scale: float = 0.35  # the smallest share of the image's area a view keeps
    aspect: float = 4 / 3  # the largest change of aspect ratio of a crop (and its inverse)
    flip: bool = False  # random horizontal flips (off: shoes are photographed toe to the left)
    brightness: float = 0.4  # brightness factor in [1 - b, 1 + b]
    contrast: float = 0.4  # contrast factor in [1 - c, 1 + c]
    channel_gain: float = 0.0  # each channel's own factor in [1 - g, 1 + g]: hides a product's exact shade
    train_limit: int | None = None  # use only the first N training images (quick mode)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 2 or self.temperature <= 0:
            raise ValueError("epochs must be >= 0, batch_size >= 2 (negatives) and temperature > 0")
        jitter = (self.brightness, self.contrast, self.channel_gain)
        if not 0 < self.crop_scale <= 1 or self.aspect < 1 or not all(0 <= j < 1 for j in jitter):
            raise ValueError("crop_scale must be in (0, 1], aspect >= 1, brightness, contrast and channel_gain in "
                             "[0, 1)")


def _view(x: torch.Tensor, generator: torch.Generator, recipe: ContrastiveRecipe) -> torch.Tensor:
    """One random view of every image of ``x`` (float N x C x H x W in [0, 1]): crop and flip as one affine map
    resampled bilinearly, then brightness and each channel's gain, then contrast. Seven numbers per image from
    ``generator``, and C more with a ``channel_gain``."""
    u = torch.rand(len(x), 7, generator=generator).to(x.device)  # drawn on the CPU: the same on every device
    area = recipe.crop_scale + (1 - recipe.crop_scale) * u[:, 0]
    ratio = torch.exp((2 * u[:, 1] - 1) * math.log(recipe.aspect))
    sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # the crop's half sides
    cx, cy = (1 - sx) * (2 * u[:, 2] - 1), (1 - sy) * (2 * u[:, 3] - 1)  # its centre: the crop stays inside
    mirror = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if recipe.flip else torch.ones_like(sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx * mirror, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gains = 1 + recipe.brightness * (2 * u[:, 5:6] - 1)
    if recipe.channel_gain:
        gains = gains + recipe.channel_gain * (2 * torch.rand(x.shape[:2], generator=generator).to(x.device) - 1)
    x = x * gains[:, :, None, None]
    grey = x.mean((1, 2, 3), keepdim=True)
    return ((x - grey) * (1 + recipe.contrast * (2 * u[:, 6] - 1))[:, None, None, None] + grey).clamp(0.0, 1.0)


def two_views(x: torch.Tensor, generator: torch.Generator, recipe: ContrastiveRecipe
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of every image of ``x`` (float N x C x H x W in [0, 1]; each view the same
    shape, in [0, 1]): a random resized crop, a horizontal flip when the recipe has ``flip``, and brightness and
    contrast jitter (the module's docstring says why these and no colour jitter). Deterministic given
    ``generator`` (a CPU ``torch.Generator``), whatever the device of ``x``.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return _view(x, generator, recipe), _view(x, generator, recipe)


def _logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The 2N x 2N cosine similarities of the views ``z1`` then ``z2``, over ``temperature``; -inf on the diagonal
    (a view is never its own partner nor its own negative)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    return logits.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of N pairs of projections (``z1[i]`` and ``z2[i]``: two views of image i).

    For each of the 2N views i with partner p(i): ``-log(exp(s(i, p(i)) / t) / sum over k != i of exp(s(i, k) / t))``,
    s the cosine similarity, averaged over the 2N views. A low temperature weighs the hardest negatives most.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    logits, n = _logits(z1, z2, temperature), len(z1)
    partners = torch.cat([logits.diagonal(n), logits.diagonal(-n)])  # s(i, i + N), then s(i + N, i)
    return (logits.logsumexp(1) - partners).mean()


def contrastive_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, recipe: ContrastiveRecipe,
                     generator: torch.Generator) -> dict[str, float]:
    """One SimCLR step (chapter 04): two views of each image of ``x``, their projections in one forward pass, the
    NT-Xent loss, backpropagate, update. No label is read.

    Returns the batch's ``loss`` and ``pair_accuracy``: the share of the 2N views whose most similar other view is
    their partner. Deterministic given its inputs and ``generator``.
    """
    v1, v2 = two_views(x, generator, recipe)
    z1, z2 = model(torch.cat([v1, v2]).contiguous(memory_format=torch.channels_last)).chunk(2)
    loss = nt_xent(z1, z2, recipe.temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        n = len(x)
        found = _logits(z1, z2, recipe.temperature).argmax(1).cpu()
        pair_accuracy = (found == torch.arange(2 * n).roll(n)).double().mean()
    return {"loss": loss.item(), "pair_accuracy": float(pair_accuracy)}


def nearest(bank: torch.Tensor, queries: torch.Tensor, k: int = K_NEIGHBOURS, chunk: int = 1000
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine similarities (M x k) and the rows in ``bank`` (int64 M x k) of the ``k`` nearest ``bank`` vectors
    of each query, nearest first. Chapter 04 (notebooks/04_evaluation.ipynb)."""
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    found = [(queries[i : i + chunk] @ bank.T).topk(min(k, len(bank)), dim=1) for i in range(0, len(queries), chunk)]
    return torch.cat([sims for sims, _ in found]), torch.cat([idx for _, idx in found])


def vote(sims: torch.Tensor, idx: torch.Tensor, bank_labels: torch.Tensor) -> torch.Tensor:
    """The label of each query (int64 M) by a vote of its neighbours (:func:`nearest`); a tie goes to the label of
    the nearer neighbours. Chapter 04 (notebooks/04_evaluation.ipynb)."""
    votes = F.one_hot(bank_labels[idx], int(bank_labels.max()) + 1).double()  # M x k x labels
    return (votes.sum(1) + 1e-3 * (votes * sims[..., None].double()).sum(1)).argmax(1)  # 1e-3 k < 1: ties only


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int = K_NEIGHBOURS
                ) -> torch.Tensor:
    """The label of each query (int64 M) by a vote of its ``k`` nearest ``bank`` vectors in cosine similarity
    (:func:`nearest`, :func:`vote`). Chapter 04 (notebooks/04_evaluation.ipynb)."""
    return vote(*nearest(bank, queries, k), bank_labels)


def linear_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 steps: int = 200, l2: float = 1e-4) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen, standardised features by L-BFGS from
    zero weights (deterministic): how much of the labels a linear read-out finds in the space.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    mean, std = train.mean(0), train.std(0) + 1e-6
    a, b = (train - mean) / std, (test - mean) / std
    weight = torch.zeros(a.shape[1], int(train_labels.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(a @ weight + bias, train_labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(((b @ weight + bias).argmax(1) == test_labels).double().mean())


def _labels(dataset: str, split: str) -> dict[str, torch.Tensor]:
    """The class of every image of ``split`` and each of its attributes, by name (``class`` first)."""
    labels = {"class": data.load(split, dataset=dataset)[1]}
    found = datasets.attributes(dataset, split)
    for j, name in enumerate(data.spec(dataset).attribute_names if found is not None else ()):
        labels[name] = found[:, j]
    return labels


def representation_report(model: ContrastiveEncoder, dataset: str = datasets.DEFAULT,
                          train_limit: int | None = None) -> dict[str, float]:
    """What the encoder's space knows of the labels it never saw (:func:`label_accuracies`), with the first
    ``train_limit`` training images (default all) as the neighbours and the probe's training set, and all test
    images (quick mode: the first 1,000).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    n_test = config.budget(len(data.load("test", dataset=dataset)[1]), 1000)
    bank = model.encode(data.load("train", dataset=dataset)[0][:train_limit])
    return label_accuracies(bank, model.encode(data.load("test", dataset=dataset)[0][:n_test]), dataset)


def label_accuracies(bank: torch.Tensor, queries: torch.Tensor, dataset: str = datasets.DEFAULT
                     ) -> dict[str, float]:
    """``knn_accuracy`` (k = 10, cosine) and ``linear_probe_accuracy`` of the class, and on a data set with
    attributes ``knn_accuracy_NAME`` of each (colour and pattern must stay visible), for the features ``bank`` of
    the first training images of ``dataset`` and ``queries`` of its first test images.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    known, truth = _labels(dataset, "train"), _labels(dataset, "test")
    sims, idx = nearest(bank, queries)  # the same neighbours vote on every label
    report = {}
    for name, labels in known.items():
        hits = vote(sims, idx, labels[: len(bank)]) == truth[name][: len(queries)]
        report["knn_accuracy" + ("" if name == "class" else f"_{name}")] = round(float(hits.double().mean()), 4)
    probe = linear_probe(bank, known["class"][: len(bank)], queries, truth["class"][: len(queries)])
    return {**report, "linear_probe_accuracy": round(probe, 4)}


class EncoderFamily(loop.RecipeFamily):
    """The encoder as the training loop sees it (chapter 04): AdamW with a one-cycle learning rate (saved and
    restored by the loop, so ``--resume`` works), :func:`contrastive_step` per batch of unlabelled images, and after
    every epoch the k-NN accuracy of 1,000 test images against 2,000 training images, to watch the space learn.
    Under torchrun each rank contrasts the views of its own slice of the batch (no gathering of negatives)."""

    per_step_history = False

    def build(self, device: torch.device) -> None:
        images, labels = (t[: self.recipe.train_limit] for t in data.load("train", dataset=self.dataset))
        self.optimise(ContrastiveEncoder(self.cfg).to(device, memory_format=torch.channels_last), device, len(images),
                      self.recipe.lr)
        bank, queries = MONITOR
        test_images, test_labels = data.load("test", dataset=self.dataset)
        self.monitor = (images[:bank], labels[:bank], test_images[:queries], test_labels[:queries])

    def data(self) -> tuple[torch.Tensor, None]:
        """The training images alone: SimCLR reads no label."""
        return data.to_float(data.load("train", dataset=self.dataset)[0][: self.recipe.train_limit]), None

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: loop.State) -> dict[str, float]:
        out = contrastive_step(self.net, self.optimizers["optimizer"], x, self.recipe, state.generator)
        self.optimizers["schedule"].step()
        return out

    def epoch_summary(self, state: loop.State, rows: list[dict[str, float]], n: int) -> dict[str, Any]:
        bank, bank_labels, queries, labels = self.monitor
        found = knn_predict(self.model.encode(bank), bank_labels, self.model.encode(queries))
        return {"monitor_knn_accuracy": round(float(found.eq(labels).double().mean()), 5)}

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        h = state.epochs[-1]
        return (f"loss {h['loss']:.4f}, pair accuracy {h['pair_accuracy']:.4f}, "
                f"k-NN accuracy {h['monitor_knn_accuracy']:.4f} ({MONITOR[1]:,} test images)")


def train_encoder(
    cfg: EncoderConfig, recipe: ContrastiveRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
    resume: bool = False, device: torch.device | None = None, dataset: str = datasets.DEFAULT,
    threads: int | None = None,
) -> tuple[ContrastiveEncoder, list[dict[str, float]]]:
    """Train the encoder on the images of ``dataset`` (no labels) in the workbook's training loop; return it (eval
    mode, on the CPU) and its per-epoch history (loss, pair accuracy, monitored k-NN accuracy).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    data.check_fits(cfg.image, dataset)
    family = EncoderFamily(cfg, recipe, dataset, seed)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    model = family.model.to("cpu", memory_format=torch.contiguous_format)
    return model.eval(), state.epochs


def train_entry(recipe: ContrastiveRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train encoder``: train the second ruler on the context's data set and measure its space
    (:func:`representation_report`, on the context's threads). Chapter 04 (notebooks/04_evaluation.ipynb)."""
    return train_then_measure(train_encoder, recipe, ctx,
                              lambda model: representation_report(model, ctx.dataset, recipe.train_limit))
