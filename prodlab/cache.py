"""Cached analyses: a long computation runs once, its result is kept, and figures and notebooks draw from it.

A figure only draws. When it needs something that trains or evaluates at length (the beta sweep of chapter 03
trains six VAEs), that work is a named *computation* registered here; its result (tensors and plain numbers) is
kept in ``data/cache/results/NAME[-quick].safetensors`` (tensors in the file, numbers in its metadata, written
atomically) and re-used until ``python -m prodlab compute NAME`` recomputes it. Quick mode keeps its own results.

A result also records the SHA-256 of the weights of every checkpoint in ``data/checkpoints`` of its data set's models
when it was computed: once any of them changes (a model retrained, one added or removed), the result is stale and is
computed again, as a notebook that read the old weights must be re-run (``tests/test_freshness.py``). A computation
names its data set (Fashion-MNIST unless it says otherwise), so the colour catalogue's models (``colour-*``) make only
the colour analyses stale.

It records :data:`FORMAT` too, the layout of what it stores: a result of another format is computed again.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from prodlab import checkpoints, config, files
from prodlab.datasets import DEFAULT as DEFAULT_DATA

Result = dict[str, Any]  # tensors and JSON-able values (numbers, strings, lists, dicts)
FORMAT = 2  # 2: stored uint8 images are N x H x W x C (1: N x 28 x 28, read as stale)


@dataclass(frozen=True)
class Computation:
    name: str
    compute: Callable[[], Result]
    description: str
    dataset: str = DEFAULT_DATA  # whose checkpoints it reads: a result goes stale when one of them changes

    @property
    def command(self) -> str:
        return f"python -m prodlab compute {self.name}"


REGISTRY: dict[str, Computation] = {}
_MEMORY: dict[Path, Result] = {}
WAIT_WHEN_BUSY = True  # False in the parallel figure workers: files.Busy instead of waiting for another worker


def computation(name: str, description: str, dataset: str = DEFAULT_DATA
                ) -> Callable[[Callable[[], Result]], Callable[[], Result]]:
    """Decorator: register a no-argument function as the computation ``name`` on the models of ``dataset``;
    calling the decorated function returns the cached result (computing and saving it the first time)."""

    def wrap(compute: Callable[[], Result]) -> Callable[[], Result]:
        if name in REGISTRY:
            raise ValueError(f"computation {name!r} registered twice")
        REGISTRY[name] = Computation(name, compute, description, dataset)

        @functools.wraps(compute)  # show(...) and help(...) see the computation itself
        def cached() -> Result:
            return get(name)

        return cached

    return wrap


def path(name: str) -> Path:
    """Where the result of ``name`` is kept (quick mode has its own file)."""
    return config.cache_dir() / "results" / f"{name}{'-quick' if config.quick() else ''}.safetensors"


def checkpoint_hashes(dataset: str = DEFAULT_DATA) -> dict[str, str]:
    """Each checkpoint of ``dataset``'s models in ``config.CHECKPOINT_DIR`` (``checkpoints.names``) -> the SHA-256
    of its weights (``checkpoints.weights_sha256``). A damaged one is left out here: whatever loads it says so."""
    hashes = {}
    for name in checkpoints.names():
        with contextlib.suppress(checkpoints.CheckpointError):
            if checkpoints.read_meta(name).get("dataset", DEFAULT_DATA) == dataset:
                hashes[name] = checkpoints.weights_sha256(name)
    return hashes


def _save(target: Path, result: Result, hashes: dict[str, str]) -> None:
    tensors = {k: v for k, v in result.items() if isinstance(v, torch.Tensor)}
    values = {k: v for k, v in result.items() if not isinstance(v, torch.Tensor)}
    metadata = {"values": json.dumps(values), "order": json.dumps(list(result)),  # safetensors sorts its keys
                "checkpoints": json.dumps(hashes), "format": str(FORMAT)}
    files.write_tensors(target, tensors or {"_empty": torch.zeros(0)}, metadata=metadata)


def _load(source: Path, dataset: str) -> Result | None:
    try:
        with safe_open(str(source), framework="pt") as f:
            if f.metadata().get("format") != str(FORMAT):
                return None  # stored in another layout: stale
            if json.loads(f.metadata()["checkpoints"]) != checkpoint_hashes(dataset):
                return None  # computed from other weights: stale
            values = json.loads(f.metadata()["values"])
            order = json.loads(f.metadata()["order"])
            tensors = {k: f.get_tensor(k) for k in f.keys() if k != "_empty"}  # noqa: SIM118 (a method)
    except (SafetensorError, OSError, KeyError, ValueError):
        return None  # a missing, damaged or older result is recomputed, never trusted
    found = {**values, **tensors}
    return {k: found[k] for k in order}


def get(name: str, refresh: bool = False) -> Result:
    """The result of computation ``name``: from this process, else from its file, else computed and saved.

    One process at a time computes it (``files.exclusive``): another one that needs it meanwhile waits, then
    reads the file, or raises ``files.Busy`` when ``WAIT_WHEN_BUSY`` is False.
    """
    spec = REGISTRY[name]
    target = path(name)
    if not refresh and target in _MEMORY:
        return _MEMORY[target]
    result = None if refresh or not target.is_file() else _load(target, spec.dataset)
    if result is None:
        with files.exclusive(target, wait=WAIT_WHEN_BUSY):
            # computed while we waited?
            result = None if refresh or not target.is_file() else _load(target, spec.dataset)
            if result is None:
                # before: weights replaced meanwhile make the result stale at once
                hashes = checkpoint_hashes(spec.dataset)
                result = spec.compute()
                _save(target, result, hashes)
                # what later calls will see: the JSON round trip of the values
                result = _load(target, spec.dataset) or result
    _MEMORY[target] = result
    return result
