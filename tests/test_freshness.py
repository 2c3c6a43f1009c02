"""Checkpoint freshness: no committed notebook shows results of a checkpoint that has changed since it ran.

Each notebook's last code cell calls ``prodlab.provenance.report()``, which prints the SHA-256 of every checkpoint the
notebook read (``prodlab.checkpoints.load`` records them). This test reads that stored output and compares it with
the checkpoint files now in ``data/checkpoints``: a difference means the notebook's numbers and prose may be stale
(as notebook 04's dcgan row was) and it must be re-run with ``make notebooks``.
"""

from __future__ import annotations

import json

import pytest

from prodlab import config, files, provenance

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("*.ipynb"))


def stored_report(path) -> dict[str, str] | None:
    """The checkpoints a committed notebook reported reading (None if it has no report line)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in reversed(nb["cells"]):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) if output.get("output_type") == "stream" else ""
            found = provenance.parse(text)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_read_the_checkpoints_that_are_shipped_now(path):
    read = stored_report(path)
    assert read is not None, f"{path.name}: its last code cell must call provenance.report(); re-run it"
    assert not stale(read), f"{path.name}: " + "; ".join(stale(read)) + ". Re-run it (make notebooks)"


def stale(read: dict[str, str], directory=config.CHECKPOINT_DIR) -> list[str]:
    """What changed among the checkpoints a notebook read: one line per missing or different weights file."""
    problems = []
    for name, sha in sorted(read.items()):
        weights = directory / f"{name}.safetensors"
        if not weights.is_file():
            problems.append(f"it read checkpoint {name!r}, which is no longer shipped")
        elif (now := files.sha256(weights)) != sha:
            problems.append(f"it ran with {name} sha256:{sha[:12]}..., the shipped one is now sha256:{now[:12]}...")
    return problems


def test_a_retrained_or_removed_checkpoint_is_stale(tmp_path):
    (tmp_path / "vae.safetensors").write_bytes(b"old weights")
    read = {"vae": files.sha256(tmp_path / "vae.safetensors"), "dcgan": "0" * 64}
    assert stale(read, tmp_path) == ["it read checkpoint 'dcgan', which is no longer shipped"]
    (tmp_path / "vae.safetensors").write_bytes(b"retrained")
    assert "it ran with vae sha256:" in stale(read, tmp_path)[1]


def test_record_report_parse_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(provenance, "_READ", {})
    assert provenance.line() == "checkpoints read: none" and provenance.parse(provenance.line()) == {}
    weights = tmp_path / "vae.safetensors"
    weights.write_bytes(b"tensors")
    sha = provenance.record("vae", weights)
    provenance.record("classifier", weights, sha256="0" * 64)
    provenance.report()
    out = capsys.readouterr().out
    assert out == f"checkpoints read: classifier=sha256:{'0' * 64} vae=sha256:{sha}\n"
    assert provenance.parse("some output\n" + out) == {"classifier": "0" * 64, "vae": sha}
    assert provenance.parse("no report here") is None
