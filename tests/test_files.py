"""Atomic writes (prodlab.files): the old file or the new one, never half of one, and the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from prodlab import files


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "state.json"
    files.write_json(target, {"epoch": 1})

    def broken(tmp):
        tmp.write_text("{half", encoding="utf-8")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        files.write_with(target, broken)
    assert files.read_json(target) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = files.write_text(tmp_path / "note.md", "hello")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_text() == "hello"


def test_tensors_round_trip(tmp_path):
    path = files.write_tensors(tmp_path / "x.safetensors", {"a": torch.arange(4)}, metadata={"k": "v"})
    assert torch.equal(load_file(str(path))["a"], torch.arange(4))
