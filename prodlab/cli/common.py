"""What several command groups share: a command with its one-line example, and the options every model command
takes (the device, a checkpoint given by name or by its run folder)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from prodlab import checkpoints, config

Handler = Callable[[argparse.Namespace], int]


def command(sub: argparse._SubParsersAction, name: str, help_text: str, func: Handler,
            example: str) -> argparse.ArgumentParser:
    """A sub-command with its help, its handler and one example line (kept as one line by the formatter)."""
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def add_device(p: argparse.ArgumentParser, what: str = "run") -> None:
    p.add_argument("--device", choices=config.DEVICES, default=None,
                   help=f"where to {what}: auto (a GPU if there is one; the default, or $PRODLAB_DEVICE), cpu, "
                        "cuda, mps")


def add_checkpoint(p: argparse.ArgumentParser, what: str = "model") -> None:
    """``MODEL``: a model name (shipped checkpoint) or a checkpoint's run folder or JSON file."""
    p.add_argument("model", help=f"{what}: a name (data/checkpoints/NAME) or a run folder or checkpoint JSON "
                                 "(e.g. runs/shapes/dcgan-quick)")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="folder of the checkpoint NAME (default: data/checkpoints/)")


def locate(model: str, directory: Path | None) -> tuple[str, Path | None]:
    """``(name, folder)`` of the checkpoint a user named: a name, a ``NAME.json`` path, or a folder holding one
    checkpoint (``CheckpointError`` saying what it found otherwise)."""
    path = Path(model)
    if path.suffix == ".json" and path.is_file():
        return path.stem, path.parent
    if path.is_dir():
        found = checkpoints.names(path)
        if len(found) != 1:
            raise checkpoints.CheckpointError(f"{path}: expected one checkpoint (NAME.json + NAME.safetensors), "
                                              f"found {len(found)}{': ' + ', '.join(found) if found else ''}")
        return found[0], path
    return model, directory
