"""Paths, the quick-mode switch, the device and seeding: the settings every other module reads.

Paths come from the package location, never from the current directory, so notebooks, tests and the
CLI agree on where data, checkpoints and figures live wherever they are started from. ``PRODLAB_RUNS`` moves the
training runs' folder (tests, and several processes that must agree on it, set it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "data" / "checkpoints"
FIGURES_DIR = REPO_ROOT / "figures"
RUNS_ENV = "PRODLAB_RUNS"
RUNS_DIR = Path(os.environ[RUNS_ENV]).expanduser() if os.environ.get(RUNS_ENV) else REPO_ROOT / "runs"

QUICK_ENV = "PRODLAB_QUICK"
DATA_ENV = "PRODLAB_DATA"
DEVICE_ENV = "PRODLAB_DEVICE"
DEVICES = ("auto", "cpu", "cuda", "mps")


def data_home() -> Path:
    """Where Fashion-MNIST is staged and cached: ``$PRODLAB_DATA`` if set, else the repo's ``data/``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def cache_dir() -> Path:
    """Where derived data is cached (the staged data set, reference features, search indexes, cached analyses):
    ``data/cache`` under :func:`data_home`. Never committed; everything in it is re-created on demand."""
    return data_home() / "cache"


def quick() -> bool:
    """True when ``PRODLAB_QUICK`` is set to a true value (1/true/yes).

    Quick mode shrinks budgets (steps, samples, epochs) so CI runs in minutes; it never fakes a result.
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def budget(full: int, quick_value: int) -> int:
    """Pick a budget (steps, samples, epochs) for the current mode."""
    return quick_value if quick() else full


def device(name: str | None = None) -> torch.device:
    """The device training runs on: ``name``, else ``$PRODLAB_DEVICE``, else ``"auto"`` (chapters 02-04, README).

    ``auto`` takes a CUDA GPU if one is visible, else Apple's MPS, else the CPU. The CLI's ``--device`` sets
    ``$PRODLAB_DEVICE`` (:func:`use_device`) and notebooks read the same variable, so both train where asked.
    On the CPU every result is bit for bit what it was before devices existed; an accelerator's are not
    (other kernels, other summation orders). Asking for a device that is not there is a ``ValueError``.
    """
    choice = (name or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {choice!r}")
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if choice == "auto":
        choice = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[choice]:
        raise ValueError(f"device {choice!r} is not available on this machine; use --device cpu (or auto)")
    return torch.device(choice)


def use_device(name: str | None) -> torch.device:
    """Check ``name`` and make it this process's default (``$PRODLAB_DEVICE``) for :func:`device`."""
    chosen = device(name)
    if name is not None:
        os.environ[DEVICE_ENV] = name
    return chosen


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the body on ``n`` CPU threads (``None``: as many as torch chose, one per core), restoring the setting.

    Training uses the user's cores by default: a learner waits for the wall clock (the shipped U-Net's steps are
    1.8 times faster on two threads than on one, for 9 % more CPU time). ``n = 1`` is for exact timing work: the
    result does not depend on how many cores the machine has, and CPU times compare across runs.
    """
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be at least 1, not {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small networks on one CPU thread (:func:`threads` with 1): tiny layers gain nothing from a second
    thread, the result is deterministic, and CPU times measured this way compare across runs."""
    with threads(1):
        yield


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (the one place that calls ``torch.manual_seed``).

    Returns a fresh ``torch.Generator`` seeded the same way, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
