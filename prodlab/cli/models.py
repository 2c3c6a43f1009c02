"""``python -m prodlab sample MODEL``: draw images into an .npz file; ``evaluate MODEL``: measure a checkpoint.

Both take a model by name (a shipped checkpoint) or by its run folder, and ``--device``. The images are uint8
N x H x W x C, with the image spec they follow and the labels a conditional model was asked for: balanced, or fixed
with ``--where NAME=VALUE`` (``class=Dress``, and for a GAN conditioned on attributes ``colour=red``, ...)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prodlab import bootstrap, checkpoints, config, data, files, ruler
from prodlab.cli.common import add_checkpoint, add_device, command, locate
from prodlab.datasets.spec import ImageSpec

MAX_SAMPLES = 10_000_000  # more than any measurement here needs; larger requests are refused in one line


def cmd_sample(args: argparse.Namespace) -> int:
    """Draw samples of a generative model into an .npz file (images uint8 N x H x W x C, labels if conditional)."""
    if not 1 <= args.n <= MAX_SAMPLES:
        raise files.TooLarge(f"--n must be between 1 and {MAX_SAMPLES:,}, not {args.n:,}")
    name, folder = locate(args.model, args.checkpoint_dir)
    meta = checkpoints.read_meta(name, folder)
    image = meta["image_spec"]
    nbytes = args.n * image["channels"] * image["height"] * image["width"]
    files.check_memory(nbytes, f"{args.n:,} images of {name}")
    files.check_disk(nbytes, args.out, f"{args.n:,} images of {name}")
    model = checkpoints.load(name, folder)
    if args.prompt is not None:
        return _sample_prompt(args, name, model)
    if args.negative_prompt is not None:
        raise ValueError("--negative-prompt goes with --prompt")
    spec, sizes = model.cfg.image, checkpoints.condition_sizes(model)
    conditions = ("class", *spec.attribute_names)[: len(sizes)]  # the label columns, in order
    fixed = _fixed(args.where, spec, conditions, name)
    asked = _requests(args.n, sizes, fixed, args.seed)
    images, _ = checkpoints.generate(name, args.n, args.seed, model=model, labels=asked,
                                     device=config.use_device(args.device))
    arrays = {"images": images.numpy(), "class_names": np.array(spec.class_names), **_label_arrays(asked, spec,
                                                                                                conditions)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(args.out, lambda tmp: _write_npz(tmp, arrays))
    said = ", ".join(f"{c}={spec.values(c)[fixed[j]]}" if j in fixed else f"{c} balanced"
                     for j, c in enumerate(conditions))
    print(f"Wrote {len(images):,} samples of {name} (seed {args.seed}), uint8 {' x '.join(map(str, images.shape))}"
          f", to {args.out}" + (f" with labels: {said}" if conditions else ""))
    return 0


def _sample_prompt(args: argparse.Namespace, name: str, model: torch.nn.Module) -> int:
    """``sample MODEL --prompt WORDS``: ``--n`` products drawn from one prompt by a text-to-product model, guided away
    from ``--negative-prompt``; one line for a model that reads no words or a word outside its vocabulary."""
    if not callable(getattr(model, "draw", None)):
        raise ValueError(f"{name} reads no prompts: --prompt needs a text-to-product model (text-diffusion)")
    if args.where:
        raise ValueError("--where and --prompt both say what to draw: give one of them")
    generator = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        x = torch.cat([model.draw([args.prompt] * len(chunk), generator, args.negative_prompt or "",
                                  guidance=args.guidance)
                       for chunk in torch.arange(args.n).split(250)])
    images = data.to_uint8(x).numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": images, "prompt": np.array(args.prompt),
              "negative_prompt": np.array(args.negative_prompt or "")}
    files.write_with(args.out, lambda tmp: _write_npz(tmp, arrays))
    print(f"Wrote {len(images):,} samples of {name} for {args.prompt!r} (seed {args.seed}, guidance "
          f"{model.cfg.guidance if args.guidance is None else args.guidance}), uint8 "
          f"{' x '.join(map(str, images.shape))}, to {args.out}")
    return 0


def _fixed(where: list[str], spec: ImageSpec, conditions: tuple[str, ...], name: str) -> dict[int, int]:
    """``--where NAME=VALUE`` options as {label column: value index}; one-line ``ValueError`` naming the valid
    conditions or values (matched without regard to case) otherwise."""
    fixed: dict[int, int] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not conditions:
            raise ValueError(f"--where {item}: {name} is unconditional: it takes no --where")
        if not sep or key not in conditions:
            raise ValueError(f"--where {item}: expected NAME=VALUE with NAME one of {', '.join(conditions)} "
                             f"(what {name} is conditioned on)")
        values = spec.values(key)
        found = [i for i, v in enumerate(values) if v.casefold() == value.casefold()]
        if not found:
            raise ValueError(f"--where {item}: unknown {key} {value!r}; {key} values: {', '.join(values)}")
        fixed[conditions.index(key)] = found[0]
    return fixed


def _requests(n: int, sizes: tuple[int, ...], fixed: dict[int, int], seed: int) -> torch.Tensor | None:
    """The labels to ask for: balanced (``checkpoints.balanced_conditions``), the ``--where`` columns fixed."""
    if not sizes:
        return None
    asked = checkpoints.balanced_conditions(n, sizes, seed)
    for column, value in fixed.items():
        asked.view(n, -1)[:, column] = value
    return asked


def _label_arrays(asked: torch.Tensor | None, spec: ImageSpec, conditions: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The .npz arrays of the labels asked for: ``labels`` (the classes), then per attribute its values (``colour``)
    and their names (``colour_names``)."""
    if asked is None:
        return {}
    columns = asked.view(len(asked), -1).numpy()
    arrays = {"labels": columns[:, 0]}
    for j, attribute in enumerate(conditions[1:], start=1):
        arrays.update({attribute: columns[:, j], f"{attribute}_names": np.array(spec.values(attribute))})
    return arrays


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as handle:  # a file object: given a path, NumPy would append ".npz" to the temporary name
        np.savez_compressed(handle, **arrays)


def _number(value: object) -> str:
    """A metric for the evaluate table: floats with 4 decimals, integers as they are, nothing for None."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _metric_lines(result: dict, recorded: dict) -> list[str]:
    """One line per number of ``result``: value, 95 % bootstrap interval (when measured), the checkpoint's value;
    the per-class and per-attribute tables below."""
    intervals = result.get("intervals", {})
    lines = [f"  {'metric':26s} {'value':>10s} {'95 % interval':>21s} {'in checkpoint':>14s}"]
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "seconds":
            low_high = f"[{intervals[key][0]:.4f}, {intervals[key][1]:.4f}]" if key in intervals else ""
            lines.append(f"  {key:26s} {_number(value):>10s} {low_high:>21s} {_number(recorded.get(key)):>14s}")
        elif isinstance(value, dict) and key not in ("intervals", "second_ruler"):
            lines += [f"  {key}:", *(f"    {sub:24s} {v:10.4f}" for sub, v in value.items())]
    return lines


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Measure a checkpoint: test accuracy for a classifier; for a generator FID, KID, precision, recall, density and
    coverage with bootstrap intervals, in the ruler's feature space and the second ruler's."""
    name, folder = locate(args.model, args.checkpoint_dir)
    if args.n < 1 or args.n > MAX_SAMPLES:
        raise files.TooLarge(f"--n must be between 1 and {MAX_SAMPLES:,}, not {args.n:,}")
    if args.replicates < 0:
        raise files.TooLarge(f"--replicates must be 0 (no intervals) or more, not {args.replicates}")
    start = time.perf_counter()
    result = ruler.evaluate(name, n=args.n, seed=args.seed, directory=folder, device=config.use_device(args.device),
                            replicates=args.replicates)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    recorded = checkpoints.read_meta(name, folder).get("metrics", {})
    space = result.get("ruler", "its ruler")
    print(f"{name}: measured now ({result['seconds']:.1f} s), in the feature space of {space}")
    print("\n".join(_metric_lines(result, recorded)))
    if "second_ruler" in result:
        second = result["second_ruler"]
        print(f"in the feature space of the second ruler, {second['ruler']}:")
        print("\n".join(_metric_lines(second, recorded.get("second_ruler", {}))))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "sample", "draw samples of a generative model into an .npz file", cmd_sample,
                "python -m prodlab sample cdcgan --n 16 --where class=Sneaker --out samples.npz\n"
                "python -m prodlab sample text-diffusion --prompt 'a red dotted dress' --n 16 --out x.npz")
    add_checkpoint(p, "generative model")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, required=True,
                   help="output .npz (arrays: images uint8 N x H x W x C, class_names, labels if conditional, and "
                        "per attribute of a GAN conditioned on them its values and value names, e.g. colour, "
                        "colour_names)")
    p.add_argument("--where", action="append", default=[], metavar="NAME=VALUE",
                   help="ask a conditional model for one value (repeatable): class=Dress; for a GAN conditioned on "
                        "attributes also e.g. colour=red, pattern=stripes (default: every value as often)")
    p.add_argument("--prompt", metavar="WORDS",
                   help='what a text-to-product model draws, in its vocabulary\'s words: "a red dotted dress"')
    p.add_argument("--negative-prompt", metavar="WORDS", help="what guidance steers away from (with --prompt)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (with --prompt; default the model's)")
    p.add_argument("--seed", type=int, default=0)
    add_device(p, "sample")
    p = command(sub, "evaluate", "measure a checkpoint (accuracy, or FID/KID/precision/recall)", cmd_evaluate,
                "python -m prodlab evaluate vae --n 2000")
    add_checkpoint(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--n", type=int, default=10_000, help="samples drawn from a generator (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, default=bootstrap.REPLICATES,
                   help=f"bootstrap resamples for the 95 %% intervals (default {bootstrap.REPLICATES}; 0: none)")
    add_device(p, "sample")
