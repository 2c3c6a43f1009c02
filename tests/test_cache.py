"""Cached analyses (prodlab.cache): computed once, kept on disk, recomputed on demand or when damaged."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from prodlab import cache, checkpoints, config, files


@pytest.fixture
def counted(tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(cache, "_MEMORY", {})
    calls = {"n": 0}

    def compute() -> cache.Result:
        calls["n"] += 1
        return {"zeta": torch.arange(3.0), "alpha": {"rows": [1, 2.5]}, "beta": torch.ones(2, 2)}

    monkeypatch.setitem(cache.REGISTRY, "test-counted", cache.Computation("test-counted", compute, "a test"))
    return calls


def test_computed_once_then_read_back_in_order(counted, monkeypatch):
    first = cache.get("test-counted")
    assert list(first) == ["zeta", "alpha", "beta"] and counted["n"] == 1
    monkeypatch.setattr(cache, "_MEMORY", {})  # a new process: read from the file
    again = cache.get("test-counted")
    assert counted["n"] == 1 and list(again) == ["zeta", "alpha", "beta"]
    assert torch.equal(again["zeta"], torch.arange(3.0)) and again["alpha"] == {"rows": [1, 2.5]}


def test_refresh_and_a_damaged_file_recompute(counted, monkeypatch):
    cache.get("test-counted")
    cache.get("test-counted", refresh=True)
    assert counted["n"] == 2
    cache.path("test-counted").write_bytes(b"not safetensors")
    monkeypatch.setattr(cache, "_MEMORY", {})
    assert torch.equal(cache.get("test-counted")["beta"], torch.ones(2, 2)) and counted["n"] == 3


def test_a_result_from_other_weights_is_computed_again(counted, monkeypatch, tmp_path):
    """A model retrained after a result was cached (its weights' SHA-256 in its JSON changed) makes the result
    stale; a new checkpoint does too. Other JSON files (benches) are not checkpoints."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setattr(config, "CHECKPOINT_DIR", folder)

    def ship(name: str, kind: str, sha: str) -> None:
        (folder / f"{name}.safetensors").write_bytes(b"weights")
        meta = {"model": name, "kind": kind, "format": checkpoints.FORMAT_VERSION, "weights_sha256": sha}
        (folder / f"{name}.json").write_text(json.dumps(meta))

    ship("vae", "vae", "a" * 64)
    (folder / "bench_x.json").write_text(json.dumps({"rows": []}))
    (folder / "broken.safetensors").write_bytes(b"weights")
    (folder / "broken.json").write_text("{not json")
    assert cache.checkpoint_hashes() == {"vae": "a" * 64}

    def fresh_process_get() -> None:
        monkeypatch.setattr(cache, "_MEMORY", {})
        cache.get("test-counted")

    fresh_process_get()
    fresh_process_get()
    assert counted["n"] == 1  # the same weights: read back
    ship("vae", "vae", "b" * 64)  # retrained
    fresh_process_get()
    assert counted["n"] == 2
    fresh_process_get()
    ship("my-gan", "gan", "c" * 64)  # a new checkpoint, of any name: every checkpoint in the folder counts
    assert cache.checkpoint_hashes() == {"my-gan": "c" * 64, "vae": "b" * 64}
    fresh_process_get()
    assert counted["n"] == 3


def test_a_result_of_another_format_is_computed_again(counted, monkeypatch):
    """A result written in an older layout (before stored images were N x H x W x C) is never read back."""
    cache.get("test-counted")
    target = cache.path("test-counted")
    with safe_open(str(target), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a method)
    assert metadata["format"] == str(cache.FORMAT)
    monkeypatch.setattr(cache, "_MEMORY", {})
    cache.get("test-counted")
    assert counted["n"] == 1  # this format: read back
    del metadata["format"]  # as format 1 wrote it
    files.write_tensors(target, tensors, metadata=metadata)
    monkeypatch.setattr(cache, "_MEMORY", {})
    cache.get("test-counted")
    assert counted["n"] == 2


def test_quick_mode_keeps_its_own_results(counted, monkeypatch):
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    full = cache.path("test-counted")
    monkeypatch.setenv(config.QUICK_ENV, "1")
    assert cache.path("test-counted") != full and cache.path("test-counted").name.endswith("-quick.safetensors")


def test_compute_command_lists_and_refuses_unknown_names(capsys):
    from prodlab.__main__ import main

    assert main(["compute"]) == 0
    assert "vae-beta-sweep" in capsys.readouterr().out
    assert main(["compute", "nope"]) == 1
    assert "no computation 'nope'" in capsys.readouterr().err
