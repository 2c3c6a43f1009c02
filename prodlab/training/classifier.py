"""Training the product classifier, the ruler of chapter 04 (FID, precision and recall are measured in its features).

:func:`classifier_step` is one supervised step (augment, forward, cross-entropy, update) so chapter 04 can show and
run it; :func:`train_classifier` is the loop around it (AdamW with a one-cycle learning rate, light augmentation),
on ``config.device()`` and, under torchrun, in several processes with DDP (``prodlab.distributed``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from prodlab import config, data, distributed
from prodlab.models.classifier import ClassifierConfig, ProductClassifier


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

    x is N x 1 x H x W; every image gets its own flip coin and its own shift in [-shift, shift]^2, the same
    distribution as torchvision's ``RandomHorizontalFlip`` + ``RandomCrop(padding=shift)`` image by image.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    n, _, h, w = x.shape
    on = x.device  # the coins and shifts come from the (CPU) generator: the same on every device
    if flip:
        coin = (torch.rand(n, generator=generator) < 0.5).to(on)
        x = torch.where(coin[:, None, None, None], x.flip(-1), x)
    if shift > 0:
        padded = F.pad(x[:, 0], (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(on)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(on)
        rows = (dy[:, None] + torch.arange(h, device=on))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=on))[:, None, :]
        x = padded[torch.arange(n, device=on)[:, None, None], rows, cols].unsqueeze(1)
    return x


def classifier_step(model: ProductClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    recipe: ClassifierRecipe, generator: torch.Generator) -> dict[str, float]:
    """One training step of the ruler (chapter 04): augment, cross-entropy on the logits, backpropagate, update.

    Returns the batch's ``loss`` and the number ``correct``; deterministic given its inputs and ``generator``.
    """
    xb = augment_batch(x, generator, recipe.shift, recipe.flip)
    logits = model(xb.contiguous(memory_format=torch.channels_last))
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "correct": int((logits.detach().argmax(1) == y).sum())}


def train_classifier(
    recipe: ClassifierRecipe | None = None, cfg: ClassifierConfig | None = None, seed: int = 0,
    progress: bool = True, device: torch.device | None = None,
) -> tuple[ProductClassifier, list[dict[str, float]]]:
    """Train the product classifier; return it (eval mode, on the CPU) and its per-epoch history (loss,
    accuracies). ``device``: default ``config.device()``. Under torchrun each rank trains on its slice of every
    global batch with the model in DDP (per-rank BatchNorm, rank 0's running statistics) and its own augmentation
    and dropout (``distributed.rank_seed``); rank 0 alone logs.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    recipe = recipe or ClassifierRecipe()
    device = device or config.device()
    with distributed.process_group(device):
        return _train_classifier(recipe, cfg, seed, progress and distributed.is_main(), device)


def _train_classifier(recipe: ClassifierRecipe, cfg: ClassifierConfig | None, seed: int, progress: bool,
                      device: torch.device) -> tuple[ProductClassifier, list[dict[str, float]]]:
    world = distributed.world()
    config.seed_everything(seed)  # the same initial weights on every rank
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed))
    images, labels = data.load("train")
    if recipe.train_limit is not None:
        images, labels = images[: recipe.train_limit], labels[: recipe.train_limit]
    x_all = data.to_float(images)
    test_images, test_labels = data.load("test")
    x_test, test_labels = data.to_float(test_images).to(device), test_labels.to(device)
    model = ProductClassifier(cfg).to(device, memory_format=torch.channels_last)
    if world.size > 1:
        torch.manual_seed(distributed.rank_seed(seed))  # dropout: each rank its own masks
    net = distributed.wrap(model, device)
    sampler = distributed.ShardSampler(len(x_all), recipe.batch_size, generator, seed, drop_last=False)
    steps_per_epoch = len(sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.max_lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.max_lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    history: list[dict[str, float]] = []
    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        sums = {"loss": 0.0, "correct": 0}
        bar = tqdm(sampler, total=steps_per_epoch, desc=f"epoch {epoch}/{recipe.epochs}", disable=not progress,
                   leave=False, mininterval=5.0)
        for idx in bar:
            out = classifier_step(net, optimizer, x_all[idx].to(device), labels[idx].to(device), recipe, generator)
            schedule.step()
            sums["loss"] += out["loss"] * len(idx)
            sums["correct"] += out["correct"]
            bar.set_postfix(loss=f"{out['loss']:.3f}", refresh=False)
        sums = distributed.sum_across_ranks(sums)
        total_loss, correct = sums["loss"], int(sums["correct"])
        test_acc = float((model.predict(x_test) == test_labels).double().mean())
        history.append({
            "epoch": epoch,
            "loss": round(total_loss / len(x_all), 5),
            "train_accuracy": round(correct / len(x_all), 5),
            "test_accuracy": round(test_acc, 5),
            "seconds": round(time.perf_counter() - start, 1),
        })
        if progress:
            h = history[-1]
            tqdm.write(f"epoch {epoch:2d}/{recipe.epochs}: loss {h['loss']:.4f}, train acc {h['train_accuracy']:.4f} "
                       f"(augmented), test acc {test_acc:.4f}, {h['seconds']:.1f} s")
    model = model.to("cpu", memory_format=torch.contiguous_format)
    return model.eval(), history
