"""What the registry and the families' trainers share: how a trainer is asked to run (:class:`Context`) and what it
returns (:class:`Trained`). Defined once, below both, so the registry can import the trainers and the trainers
never import the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prodlab import config, distributed, runs
from prodlab.datasets.spec import ImageSpec


@dataclass(frozen=True)
class Context:
    """How a trainer is asked to run: the model's name and config (built for the data set's image spec), the data
    set, the seed, progress output, resume, the run folder, whether to train the baseline, device and threads."""

    name: str
    config: Any  # the model's config dataclass, for ``dataset``'s images
    dataset: str
    seed: int
    progress: bool
    resume: bool
    run: runs.Run
    with_baseline: bool
    device: torch.device | None = None
    threads: int | None = None

    @property
    def image(self) -> ImageSpec:
        return self.config.image

    @property
    def measures(self) -> bool:
        """Whether this process measures what it trained: rank 0 alone under torchrun (the others hold the same
        weights and would only repeat its work); always in one process."""
        return distributed.is_main()


@dataclass(frozen=True)
class Trained:
    """What a trainer returns: the model to save, its measured metrics and the other JSON fields."""

    model: nn.Module
    metrics: dict[str, Any]
    extra: dict[str, Any]


def train_then_measure(train: Callable[..., tuple[nn.Module, Any]], recipe: Any, ctx: Context,
                       measure: Callable[[nn.Module], dict[str, Any]]) -> Trained:
    """The train entry most families share: ``train(config, recipe, run, seed, progress, resume, device, dataset,
    threads)`` from the context, then ``measure(model)`` on the context's threads (only where :attr:`Context.measures`),
    the history kept beside the metrics."""
    model, history = train(ctx.config, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume, ctx.device, ctx.dataset,
                           ctx.threads)
    if not ctx.measures:
        return Trained(model, {}, {})
    with config.threads(ctx.threads):
        measured = measure(model)
    return Trained(model, measured, {"history": history})
