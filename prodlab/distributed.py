"""Data parallelism across processes and machines: ``torchrun`` and PyTorch's DistributedDataParallel (DDP).

``torchrun --nproc-per-node N -m prodlab train NAME`` starts N copies of the command; torchrun tells each its
place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).
:func:`process_group` joins them into one group (gloo on the CPU, NCCL on GPUs) for the length of the command.
Without torchrun nothing here does anything: one process, no group, training exactly as before.

What a training loop needs, and nothing home-made where PyTorch has it:

* :func:`wrap`: DDP around a model. Each rank computes gradients on its own shard of the global batch; DDP
  averages them across ranks during ``backward`` (so every rank takes the same optimiser step) and, before every
  forward pass, copies rank 0's buffers (BatchNorm running statistics) to the others.
* :class:`ShardSampler`: what ``DistributedSampler`` does for the in-memory tensors here: every rank draws the
  same permutation each epoch (``set_epoch``) and takes its slice of each global batch.
* :func:`rank_seed`: the seed of each rank's own random stream (noise, eps, augmentation), so ranks do not draw
  the same numbers; rank 0's is the run's seed.
* :func:`is_main`, :func:`mean_across_ranks`, :func:`sum_across_ranks`, :func:`gather_object`: only rank 0
  writes files, logs and progress bars; every rank takes the same stop decisions from the same (averaged) numbers.

README, "More than one machine", explains data parallelism with measured numbers; notebooks read the same device
setting (``config.device``).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size`` (1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The current process group's rank and size; ``World(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the one process that writes files, logs and bars.

    Inside a process group its rank decides, outside one torchrun's ``RANK``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def processes() -> int:
    """How many processes torchrun started for this command (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True when torchrun started this process as one of several."""
    return processes() > 1


_RENDEZVOUS: list[dist.Store] = []  # torchrun's key-value store, reached once per process
_GROUPS = itertools.count()  # process groups made so far (every rank makes them in the same order)


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join torchrun's ranks in a process group for the body (gloo on the CPU, NCCL on CUDA), and leave it after.

    A training loop holds one for its length, so what follows it (measuring, with torchmetrics, which would
    otherwise gather every rank's samples) runs as plain single processes. Each group gets fresh keys in
    torchrun's store, so one command can train several runs. Without torchrun (or inside a group made by the
    caller, as tests do) it only yields the current :class:`World`. On CUDA a rank takes GPU ``LOCAL_RANK``.
    """
    if not launched() or dist.is_initialized():
        yield world()
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not _RENDEZVOUS:
        _RENDEZVOUS.append(next(dist.rendezvous("env://"))[0])
    store = dist.PrefixStore(f"prodlab-{next(_GROUPS)}", _RENDEZVOUS[0])
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store,
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    try:
        yield world()
    finally:
        dist.destroy_process_group()


@contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Send this process's standard output to nowhere unless it is rank 0 (error messages still show)."""
    if is_main():
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            yield
        finally:
            sys.stdout = stdout


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when there are several ranks; ``module`` itself otherwise.

    DDP broadcasts rank 0's parameters and buffers at construction, averages gradients in ``backward`` and
    broadcasts rank 0's buffers before each forward (``broadcast_buffers=True``, its default): BatchNorm then
    normalises with each rank's own batch statistics and every rank keeps rank 0's running statistics.
    """
    if world().size == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed of ``rank``'s own random stream: ``seed`` itself on rank 0 (a one-process run is unchanged),
    a number derived from ``(seed, rank)`` with NumPy's ``SeedSequence`` on the others (no two ranks, and no
    other run's rank 0, share a stream by accident)."""
    rank = world().rank if rank is None else rank
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class ShardSampler:
    """The batches of one epoch for this rank: ``DistributedSampler``'s job for in-memory tensors.

    ``batch_size`` is the *global* batch (what a one-process run uses); each of the ``size`` ranks takes an equal
    slice of every global batch, so one step of N ranks sees exactly the images one step of one process sees.
    One process draws the epoch's permutation from ``generator`` (the run's stream, as before); several ranks
    draw it from ``seed + epoch`` (``set_epoch``), the same on every rank and reproducible after a resume.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, seed: int, drop_last: bool) -> None:
        self.world = world()
        if batch_size % self.world.size:
            raise ValueError(f"the batch size {batch_size} must be a multiple of the number of processes "
                             f"{self.world.size}: it is the global batch, split equally between them")
        self.n, self.batch_size, self.generator, self.seed, self.drop_last = n, batch_size, generator, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Which epoch's permutation to draw (several ranks: all of them must call it with the same epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Steps per epoch (the last, partial global batch kept unless ``drop_last``)."""
        full, rest = divmod(self.n, self.batch_size)
        return full + int(rest >= self.world.size and not self.drop_last)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.world.size == 1:
            order = torch.randperm(self.n, generator=self.generator)
        else:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for i in range(len(self)):
            batch = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield torch.tensor_split(batch, self.world.size)[self.world.rank]


def sum_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """The sum of each number over the ranks; ``values`` itself (not even rounded) in one process."""
    if world().size == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, t.tolist(), strict=True))


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each number over the ranks (the global batch's mean when the slices are equal); ``values``
    itself in one process. Every rank gets the same numbers, so their stop decisions agree."""
    size = world().size
    return values if size == 1 else {k: v / size for k, v in sum_across_ranks(values).items()}


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in one process); all ranks must call it."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process); all ranks must call it."""
    if world().size == 1:
        return [obj]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, obj)
    return out



def command_prefix() -> str:
    """How this command was started, for a checkpoint's ``command`` and the resume hint: ``python -m prodlab``,
    or the torchrun line that gives the same number of processes per machine and machines."""
    if not launched():
        return "python -m prodlab"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    nodes = int(os.environ["WORLD_SIZE"]) // per_node
    return f"torchrun {'--standalone' if nodes == 1 else f'--nnodes {nodes}'} --nproc-per-node {per_node} -m prodlab"
