"""Resumable training runs: a folder per run with the last good epoch, and divergence detection.

Shipped weights live in ``data/checkpoints`` (``prodlab.checkpoints``); this module keeps the *working* state of
a training run in ``runs/NAME/``: after every epoch ``state.pt`` (model and optimizer state dicts, RNG states, the
step counter and the history) is written atomically, so an interrupted run resumed with ``--resume`` loses at
most one epoch. ``state.pt`` holds tensors and plain values only and is read with ``torch.load(weights_only=True)``,
which unpickles no code. A run that diverges (NaN/inf losses, or a GAN discriminator pinned at 0 or 1 for a long
time) stops with :class:`DivergenceError`; the last good ``state.pt`` is left untouched.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prodlab import config, distributed, files

STATE_FILE = "state.pt"
READ_ERRORS = (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError)  # a damaged or foreign state


class RunError(RuntimeError):
    """A training run cannot go on; the message says why and what to do."""


class DivergenceError(RunError):
    """Training diverged; the message says where, and where the last good state is."""


class Interrupted(RunError):
    """Training was stopped with Ctrl-C; the message names the last complete epoch saved (the CLI adds how to
    resume). Every file is written atomically, so nothing half-written is left."""


@dataclass
class Run:
    """The folder ``runs/NAME`` of one training run and its last good state."""

    name: str
    directory: Path = field(default_factory=lambda: config.RUNS_DIR)

    @property
    def path(self) -> Path:
        return Path(self.directory) / self.name

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    def save(
        self,
        epoch: int,
        step: int,
        modules: dict[str, nn.Module],
        optimizers: dict[str, Any],  # optimisers and learning-rate schedulers (anything with a state_dict)
        generator: torch.Generator,
        history: Any,
    ) -> Path:
        """Write the state after ``epoch`` (atomically: a crash or Ctrl-C mid-write keeps the previous state).

        Under torchrun every rank calls it and rank 0 alone writes: its modules and optimisers (the same on every
        rank), and each rank's random streams (``ranks``), so a resumed run continues every rank's own stream.
        Returns the path of the state file.
        """
        streams = distributed.gather_object({"torch_rng": torch.get_rng_state(), "generator": generator.get_state()})
        if not distributed.is_main():
            return self.state_path
        state = {
            "epoch": epoch,
            "step": step,
            "modules": {k: m.state_dict() for k, m in modules.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            **streams[0],
            "history": history,
        }
        if len(streams) > 1:
            state["ranks"] = streams
        return files.write_torch(self.state_path, state)

    def last_epoch(self) -> int:
        """The last complete epoch saved in ``state.pt`` (0 when none is)."""
        if not self.state_path.is_file():
            return 0
        try:
            return int(torch.load(self.state_path, map_location="cpu", weights_only=True)["epoch"])
        except READ_ERRORS:
            return 0

    def _read(self) -> dict[str, Any] | Exception | None:
        """The saved state; ``None`` without one; the error that reading it raised (for :meth:`restore`)."""
        if not self.state_path.is_file():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except READ_ERRORS as err:
            return err

    def restore(
        self,
        modules: dict[str, nn.Module],
        optimizers: dict[str, Any],  # optimisers and learning-rate schedulers (anything with a state_dict)
        generator: torch.Generator,
    ) -> tuple[int, int, Any]:
        """Load the last good state into the given objects; return ``(epoch, step, history)``.

        ``(0, 0, [])`` when the run has no state yet (a fresh start). Under torchrun rank 0 reads the file and
        sends it to the others (so only rank 0's machine needs the run folder); each rank takes back its own
        random streams, and resuming with another number of processes is refused.
        """
        state = distributed.broadcast_object(self._read() if distributed.is_main() else None)
        if state is None:
            return 0, 0, []
        try:
            if isinstance(state, Exception):
                raise state
            streams = _streams(state, distributed.world())
            for k, m in modules.items():
                m.load_state_dict(state["modules"][k])
            for k, o in optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        except READ_ERRORS as err:
            raise RunError(
                f"cannot resume from {self.state_path}: {err}. Delete the folder {self.path} to start over."
            ) from err
        torch.set_rng_state(streams["torch_rng"])
        generator.set_state(streams["generator"])
        return int(state["epoch"]), int(state["step"]), state["history"]


def _streams(state: dict[str, Any], world: distributed.World) -> dict[str, torch.Tensor]:
    """This rank's random streams in a saved state; ``RunError`` if it was saved by another number of processes."""
    saved = len(state.get("ranks", [state]))
    if saved != world.size:
        raise RunError(f"this run was saved by {saved} process(es) and is resumed by {world.size}: resume it with "
                       f"the same number of processes (torchrun --nproc-per-node), or start it over")
    return state["ranks"][world.rank] if "ranks" in state else state


@contextmanager
def interruptible(run: Run) -> Iterator[None]:
    """Turn Ctrl-C inside training into :class:`Interrupted`, naming the last complete epoch of ``run``."""
    try:
        yield
    except KeyboardInterrupt:
        epoch = run.last_epoch()
        saved = f"the last complete epoch, {epoch}, is saved in {run.path}" if epoch else "no epoch had finished"
        raise Interrupted(f"interrupted: {saved}") from None


@dataclass
class DivergenceMonitor:
    """Stops a run whose losses are not finite, or whose discriminator is pinned at 0 or 1.

    Mean ``D(x)`` and ``D(G(z))`` both within 0.005 of 0 or 1 for ``patience`` consecutive checks: either D
    wins outright (1 and 0) and the generator receives no useful gradient (the failure the non-saturating
    loss of §4 only delays), or D has collapsed to a constant answer; either way the game has broken down.
    """

    run: Run
    patience: int = 200
    pinned_steps: int = 0

    def _stop(self, step: int, why: str) -> None:
        where = (
            f"the last good state is {self.run.state_path}" if self.run.state_path.is_file()
            else "no epoch had finished, so no state was saved"
        )
        raise DivergenceError(
            f"training diverged at step {step}: {why}. Stopped; {where}. Lower the learning rate (or change the "
            "recipe) and train again; --resume continues from the last good state."
        )

    def check(self, step: int, losses: dict[str, float], d_real: float | None = None,
              d_fake: float | None = None) -> None:
        """Raise ``DivergenceError`` if a loss is NaN/inf or D has been pinned for ``patience`` checks."""
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            self._stop(step, ", ".join(f"{k} = {v}" for k, v in bad.items()))
        if d_real is None or d_fake is None:
            return
        pinned = all(v < 0.005 or v > 0.995 for v in (d_real, d_fake))
        self.pinned_steps = self.pinned_steps + 1 if pinned else 0
        if self.pinned_steps >= self.patience:
            self._stop(step, f"D(x) = {d_real:.3f} and D(G(z)) = {d_fake:.3f} pinned for {self.patience} steps")
