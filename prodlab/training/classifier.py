"""Training the product classifier, the ruler of chapter 04 (FID, precision and recall are measured in its features).

:func:`classifier_step` is one supervised step (augment, forward, cross-entropy, update) so chapter 04 can show and
run it; :func:`train_classifier` runs it in the workbook's one training loop (``prodlab.training.loop``) with
AdamW and a one-cycle learning rate (:class:`ClassifierFamily`). On a data set with attributes (the colour
catalogue's colour and pattern, issue 25) the model has a head per attribute, the step adds their cross-entropies
to the class loss and every epoch reports a test accuracy per head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from prodlab import data, datasets, distributed, ruler, runs
from prodlab.models.classifier import ClassifierConfig, ProductClassifier
from prodlab.training import loop
from prodlab.training.base import Context, Trained


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the shipped classifier is trained (chapter 04): AdamW, one-cycle learning rate, flips and shifts.

    12 epochs of 60,000 images take about 9 CPU-minutes (5 minutes on 2 idle cores).
    """

    epochs: int = 12
    batch_size: int = 128
    max_lr: float = 3e-3
    weight_decay: float = 0.05
    shift: int = 2  # random shift of up to this many pixels (pad + crop)
    flip: bool = True  # random horizontal flip (labels survive it; a generator would learn toe-right shoes)
    train_limit: int | None = None  # use only the first N training images (quick mode)


def augment_batch(x: torch.Tensor, generator: torch.Generator, shift: int = 2, flip: bool = True) -> torch.Tensor:
    """Random horizontal flip and random crop after zero padding (§3.3 step 2), on a whole batch at once.

    x is N x C x H x W; every image gets its own flip coin and its own shift in [-shift, shift]^2, the same
    distribution as torchvision's ``RandomHorizontalFlip`` + ``RandomCrop(padding=shift)`` image by image.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    n, _, h, w = x.shape
    on = x.device  # the coins and shifts come from the (CPU) generator: the same on every device
    if flip:
        coin = (torch.rand(n, generator=generator) < 0.5).to(on)
        x = torch.where(coin[:, None, None, None], x.flip(-1), x)
    if shift > 0:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(on)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(on)
        rows = (dy[:, None] + torch.arange(h, device=on))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=on))[:, None, None, :]
        channels = torch.arange(x.shape[1], device=on)[None, :, None, None]
        x = padded[torch.arange(n, device=on)[:, None, None, None], channels, rows, cols]
    return x


def classifier_step(model: ProductClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    recipe: ClassifierRecipe, generator: torch.Generator,
                    attributes: torch.Tensor | None = None) -> dict[str, float]:
    """One training step of the ruler (chapter 04): augment, cross-entropy on the logits, backpropagate, update.

    Returns the batch's ``loss`` and the number ``correct``; deterministic given its inputs and ``generator``.
    With ``attributes`` (int64 N x K, the model's attributes in the spec's order) the loss is the plain, unweighted
    sum of the class head's cross-entropy and each attribute head's (flips and shifts keep colour and pattern), and
    the result adds ``loss_class`` and, per attribute, ``loss_NAME`` and ``correct_NAME``.
    """
    xb = augment_batch(x, generator, recipe.shift, recipe.flip).contiguous(memory_format=torch.channels_last)
    if attributes is None:
        logits, terms = model(xb), {}
    else:
        heads = model(xb, all_heads=True)  # through forward: DDP averages every head's gradients
        logits, terms = heads.pop("class"), _attribute_terms(heads, attributes)
    loss = F.cross_entropy(logits, y)
    total = loss + sum(term for term, _ in terms.values()) if terms else loss
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    row = {"loss": total.item(), "correct": int((logits.detach().argmax(1) == y).sum())}
    if terms:
        row["loss_class"] = loss.item()
    for name, (term, correct) in terms.items():
        row.update({f"loss_{name}": term.item(), f"correct_{name}": correct})
    return row


def _attribute_terms(heads: dict[str, torch.Tensor], attributes: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """Each attribute head's cross-entropy and number of correct answers, against column j of ``attributes`` for
    the j-th head (the heads are in the order of the spec's attributes, as the catalogue stores them)."""
    if attributes.ndim != 2 or attributes.shape[1] != len(heads):
        raise ValueError(f"expected attributes N x {len(heads)} (one column per head: {', '.join(heads) or 'none'}), "
                         f"got {tuple(attributes.shape)}")
    terms = {}
    for j, (name, logits) in enumerate(heads.items()):
        target = attributes[:, j]
        terms[name] = (F.cross_entropy(logits, target), int((logits.detach().argmax(1) == target).sum()))
    return terms


class ClassifierFamily(loop.RecipeFamily):
    """The ruler as the training loop sees it (chapter 04): AdamW with a one-cycle learning rate (a scheduler the
    loop saves and restores like the optimiser, so ``--resume`` works), :func:`classifier_step` per batch, and the
    test accuracy after every epoch (one per head on a data set with attributes: ``test_accuracy`` is the class's,
    ``test_accuracy_NAME`` each attribute's). Channels-last memory layout: about twice as fast on a CPU."""

    per_step_history = False
    drop_last = False

    def build(self, device: torch.device) -> None:
        self.model = ProductClassifier(self.cfg).to(device, memory_format=torch.channels_last)
        if distributed.world().size > 1:
            torch.manual_seed(distributed.rank_seed(self.seed))  # dropout: each rank its own masks
        images = len(data.load("train", dataset=self.dataset)[1][: self.recipe.train_limit])
        self.optimise(self.model, device, images, self.recipe.max_lr)
        test_images, test_labels = data.load("test", dataset=self.dataset)
        self.x_test, self.y_test = data.to_float(test_images).to(device), test_labels.to(device)
        test_attributes = self.attributes("test")
        self.a_test = None if test_attributes is None else test_attributes.to(device)

    def attributes(self, split: str) -> torch.Tensor | None:
        """The data set's attributes of ``split`` (int64 N x K) when the model has attribute heads, else None;
        ``ValueError`` when the data set does not hold the attributes the heads were built for."""
        wanted = self.cfg.image.attributes
        if not wanted:
            return None
        found = datasets.attributes(self.dataset, split)
        if found is None or datasets.spec(self.dataset).attributes != wanted:
            raise ValueError(f"the model has heads for attributes {', '.join(self.cfg.image.attribute_names)}, but "
                             f"data set {self.dataset!r} does not hold them: build its config from "
                             f"data.spec({self.dataset!r})")
        return found

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images and their labels; with attributes the labels are N x (1 + K), the class then each
        attribute, so the loop's batches slice classes and attributes together."""
        images, labels = data.load("train", dataset=self.dataset)
        attributes = self.attributes("train")
        if attributes is not None:
            labels = torch.cat([labels[:, None], attributes], 1)
        return data.to_float(images[: self.recipe.train_limit]), labels[: self.recipe.train_limit]

    def step(self, x: torch.Tensor, y: torch.Tensor | None, state: loop.State) -> dict[str, float]:
        labels, attributes = (y, None) if y.ndim == 1 else (y[:, 0], y[:, 1:])
        out = classifier_step(self.net, self.optimizers["optimizer"], x, labels, self.recipe, state.generator,
                              attributes)
        self.optimizers["schedule"].step()
        row = {"loss": out["loss"], "train_accuracy": out["correct"] / len(x)}
        if attributes is not None:
            row["loss_class"] = out["loss_class"]
        for name in self.cfg.image.attribute_names:
            row.update({f"loss_{name}": out[f"loss_{name}"], f"train_accuracy_{name}": out[f"correct_{name}"] / len(x)})
        return row

    def epoch_summary(self, state: loop.State, rows: list[dict[str, float]], n: int) -> dict[str, Any]:
        shares = ruler.attribute_fidelity(self.model, self.x_test, self.y_test, self.a_test)
        return {"test_accuracy": round(shares.pop("class"), 5),
                **{f"test_accuracy_{name}": round(share, 5) for name, share in shares.items()}}

    def log(self, state: loop.State, means: dict[str, float]) -> str:
        h = state.epochs[-1]
        heads = "".join(f", {name} {h[f'test_accuracy_{name}']:.4f}" for name in self.cfg.image.attribute_names)
        return (f"loss {h['loss']:.4f}, train acc {h['train_accuracy']:.4f} (augmented), "
                f"test acc {h['test_accuracy']:.4f}{heads}")


def train_classifier(
    cfg: ClassifierConfig, recipe: ClassifierRecipe, run: runs.Run, seed: int = 0, progress: bool = True,
    resume: bool = False, device: torch.device | None = None, dataset: str = datasets.DEFAULT,
    threads: int | None = None,
) -> tuple[ProductClassifier, list[dict[str, float]]]:
    """Train the product classifier on ``dataset`` in the workbook's training loop; return it (eval mode, on the
    CPU) and its per-epoch history (loss, accuracies). Under torchrun each rank trains on its slice of every
    global batch with the model in DDP (per-rank BatchNorm, rank 0's running statistics) and its own augmentation
    and dropout; rank 0 alone logs.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    data.check_fits(cfg.image, dataset)
    family = ClassifierFamily(cfg, recipe, dataset, seed)
    state = loop.train(family, loop.Setup(run, seed, progress, resume, device, threads))
    model = family.model.to("cpu", memory_format=torch.contiguous_format)
    return model.eval(), state.epochs


def train_entry(recipe: ClassifierRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train classifier``: train the ruler on the context's data set and report its test accuracy, per class
    and as a confusion matrix, and each attribute head's (``test_accuracy_NAME``) on a data set with attributes.
    Chapter 04 (notebooks/04_evaluation.ipynb)."""
    model, history = train_classifier(ctx.config, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume, ctx.device,
                                      ctx.dataset, ctx.threads)
    if not ctx.measures:
        return Trained(model, {}, {})
    report = ruler.classifier_report(model, "test", dataset=ctx.dataset)
    measured = {k: v for k, v in report.items() if k != "test_confusion"}
    measured.update(ruler.attribute_accuracies(model, "test", ctx.dataset))  # test_accuracy_colour, ...
    return Trained(model, measured, {"history": history, "test_confusion": report["test_confusion"]})
