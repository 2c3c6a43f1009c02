"""Paths, the quick-mode switch and seeding: the three settings every other module reads.

Paths come from the package location, never from the current directory, so notebooks, tests and the
CLI agree on where data, checkpoints and figures live wherever they are started from.
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
RUNS_DIR = REPO_ROOT / "runs"

QUICK_ENV = "PRODLAB_QUICK"
DATA_ENV = "PRODLAB_DATA"


def data_home() -> Path:
    """Where Fashion-MNIST is staged and cached: ``$PRODLAB_DATA`` if set, else the repo's ``data/``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def quick() -> bool:
    """True when ``PRODLAB_QUICK`` is set to a true value (1/true/yes).

    Quick mode shrinks budgets (steps, samples, epochs) so CI runs in minutes; it never fakes a result.
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def budget(full: int, quick_value: int) -> int:
    """Pick a budget (steps, samples, epochs) for the current mode."""
    return quick_value if quick() else full


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small networks on one CPU thread, restoring the setting after.

    Tiny layers gain nothing from a second thread (the split costs more than it saves), the result is
    deterministic, and CPU times measured this way compare across runs whatever else the machine is doing.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (the one place that calls ``torch.manual_seed``).

    Returns a fresh ``torch.Generator`` seeded the same way, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
