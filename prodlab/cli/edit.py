"""``python -m prodlab edit PHOTO``: edit a product photo with the trained models and write the result as a PNG
(notebooks 05 and 09, article §2.4 item 2, §3.3 step 4): ``--inpaint x,y,w,h`` fills a rectangle, ``--denoise``
removes noise, in Fashion-MNIST or in any catalogue with a model trained on it (``--data NAME``); ``--recolour
COLOUR`` and ``--pattern NAME`` change one attribute of a product, in a catalogue that has it (``--data colour``);
``--inpaint x,y,w,h --model prompt --prompt WORDS`` fills the rectangle from a prompt (notebook 10).

The photo is first made a product image of the catalogue's spec, exactly as ``search`` reads it (``imageio``:
bounded memory, one line for a file that cannot be read); the edit works on that image, and the PNG shows it,
enlarged by ``--scale`` with nearest-neighbour pixels. Every edit is deterministic given ``--seed``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from prodlab import data, datasets, degrade, files
from prodlab.cli.common import command
from prodlab.datasets.spec import ImageSpec

DEFAULT_SIGMA = 0.3  # chapter 05's denoising level (ch05_editing.DENOISE_SHOWN["gaussian"]; tests/test_cli_edit.py)
MAX_SIGMA = 1.0  # pixel-scale noise beyond the whole pixel range is no photo's
MAX_SCALE = 32  # a 28-pixel product becomes 896 pixels, a 64-pixel colour one 2,048
MODELS = {"diffusion": ("diffusion", "diffusion"), "vae": ("vae", "vae"), "dcgan": ("dcgan", "gan"),
          "prompt": ("text-diffusion", "text-diffusion")}  # checkpoint, kind


@dataclass(frozen=True)
class Edit:
    """One edit of the ``edit`` command: its option's name and its methods (``--model``), the first the default."""

    name: str
    methods: dict[str, str]  # --model NAME -> what it is, for --help


INPAINT = Edit("inpaint", {
    "diffusion": "RePaint with the flow model (default)", "vae": "latent optimisation under the VAE",
    "dcgan": "latent optimisation under the DCGAN", "harmonic": "classical: the border diffused inwards",
    "mean": "classical: the average catalogue product",
    "prompt": "drawn from --prompt by the text-to-product model, RePaint in its latent grid"})
DENOISE = Edit("denoise", {
    "diffusion": "SDEdit with the flow model (default)", "vae": "projection onto the VAE's products",
    "dcgan": "projection onto the DCGAN's products", "gaussian": "classical: Gaussian filter tuned to --sigma",
    "median": "classical: median filter tuned to --sigma"})
CHANGE = {"cdcgan": "the conditional GAN: the photo's code found, the condition swapped (default)",
          "vae": "a latent direction of the catalogue's VAE",
          "diffusion": "SDEdit with the new condition by the conditional flow model, its change carried over",
          "sdedit": "SDEdit with the new condition, the flow model's drawing as it is",
          "prompt": "SDEdit by the new prompt, the text-to-product model's drawing as it is",
          "prompt-carried": "SDEdit by the new prompt with the text-to-product model, its change carried over",
          }  # prodlab.edit.recolour
RECOLOUR = Edit("recolour", CHANGE)
PATTERN = Edit("pattern", CHANGE)
ATTRIBUTE = {RECOLOUR.name: "colour", PATTERN.name: "pattern"}  # the attribute each of these edits changes
# The edits, exactly one per command (argparse's mutually exclusive group in add()).
EDITS = {e.name: e for e in (INPAINT, DENOISE, RECOLOUR, PATTERN)}
# the methods that draw random numbers (--seed); others: not
RANDOM = {"diffusion", "sdedit", "dcgan", "cdcgan", "prompt", "prompt-carried"}
PROMPT_EXAMPLE = "--inpaint 8,8,16,16 --model prompt --prompt 'a red striped dress'"


def cmd_edit(args: argparse.Namespace) -> int:
    """Edit a photo's product image (fill a rectangle or remove noise) and write it as a PNG."""
    edit = next(e for e in EDITS.values() if getattr(args, e.name) not in (None, False))
    method = args.model or next(iter(edit.methods))
    if method not in edit.methods:
        raise ValueError(f"--model {method} cannot {edit.name}; --{edit.name} takes: {', '.join(edit.methods)}")
    by_words = edit is INPAINT and method == "prompt"
    if args.prompt is not None and not by_words:
        raise ValueError(f"--prompt says what --inpaint --model prompt draws in the box, e.g. {PROMPT_EXAMPLE}")
    if by_words and args.prompt is None:
        raise ValueError(f"--inpaint --model prompt draws from words: add --prompt WORDS, e.g. {PROMPT_EXAMPLE}")
    if args.sigma is not None and edit is not DENOISE:
        raise ValueError(f"--sigma is the noise level of --denoise; --{edit.name} takes none")
    sigma = DEFAULT_SIGMA if args.sigma is None else args.sigma
    if not 0.0 < sigma <= MAX_SIGMA:
        raise ValueError(f"--sigma must be above 0 and at most {MAX_SIGMA} (pixel values run from 0 to 1), "
                         f"not {sigma}")
    if not 1 <= args.scale <= MAX_SCALE:
        raise ValueError(f"--scale must be between 1 and {MAX_SCALE}, not {args.scale}")
    _check_out(args.out, args.photo)
    image = data.spec(args.data)  # an unknown or broken catalogue says so here
    if edit.name in ATTRIBUTE:
        return _change(edit, method, args, image)
    box = _box(args.inpaint, image) if edit is INPAINT else None
    from prodlab.edit import restore  # PyTorch models and torchmetrics: seconds to import, only this command needs them

    model = None
    if method in MODELS:
        restore.trained(MODELS[method][0], args.data)  # a missing model is named before the photo is read
    x = restore.product_image(args.photo, image)[None]  # 1 x C x H x W in [0, 1], as search reads it
    if method in MODELS:
        model = restore.load_trained(MODELS[method][0], args.data, kind=MODELS[method][1])
        if method == "diffusion" and model.cfg.objective != "flow":  # SDEdit and RePaint follow the flow's path
            raise ValueError(f"the diffusion model of {args.data} has objective {model.cfg.objective!r}; editing "
                             f"needs a flow model: python -m prodlab train diffusion --data {args.data} "
                             "--set objective=flow")
        if by_words:
            model.cfg.tokenizer.encode([args.prompt])  # a word outside the vocabulary: one line that lists it
    missing = None if box is None else _missing(box, image)
    edited = _run(edit, method, model, x, missing, sigma, args.seed, args.data, args.prompt)
    shown = x if missing is None else x.masked_fill(missing, 0.5)  # the hole grey, as chapter 05 shows it
    pixels = _pixels([shown, edited] if args.side_by_side else [edited], args.scale)
    _write_png(args.out, pixels)
    done = (f"Inpainted the {box[2]} x {box[3]} box at x {box[0]}, y {box[1]} of {args.photo}" if box is not None
            else f"Denoised {args.photo} at noise level sigma {sigma}") + (f" from {args.prompt!r}" if by_words else "")
    seed = f", seed {args.seed}" if method in RANDOM else ""
    print(f"{done} (as a {image.channels} x {image.height} x {image.width} {args.data} image) with {method} "
          f"({edit.methods[method].removesuffix(' (default)')}{seed}); wrote {args.out}, "
          f"{pixels.shape[1]} x {pixels.shape[0]} pixels" + (", input | edited" if args.side_by_side else ""))
    return 0


def _change(edit: Edit, method: str, args: argparse.Namespace, image: ImageSpec) -> int:
    """``--recolour`` or ``--pattern``: the photo with that attribute set (``prodlab.edit.recolour``), as a PNG."""
    attribute = ATTRIBUTE[edit.name]
    if attribute not in image.attribute_names:
        raise ValueError(f"data set {args.data!r} has no {attribute} attribute, so --{edit.name} cannot change it; "
                         "use a catalogue that has one, e.g. --data colour")
    wanted = getattr(args, edit.name)
    values = image.values(attribute)
    if wanted not in values:
        raise ValueError(f"--{edit.name} {wanted!r}: {args.data} knows the {attribute}s {', '.join(values)}")
    from prodlab.edit import recolour, restore  # PyTorch models: seconds to import, only this command needs them

    restore.trained(recolour.MODEL[method], args.data)  # a missing model is named before the photo is read
    x = restore.product_image(args.photo, image)[None]
    edited = recolour.edit(x, attribute, values.index(wanted), method, args.data, seed=args.seed)
    pixels = _pixels([x, edited] if args.side_by_side else [edited], args.scale)
    _write_png(args.out, pixels)
    seed = f", seed {args.seed}" if method in RANDOM else ""
    print(f"Set the {attribute} of {args.photo} to {wanted} (as a {image.channels} x {image.height} x {image.width} "
          f"{args.data} image) with {method} ({edit.methods[method].removesuffix(' (default)')}{seed}); wrote "
          f"{args.out}, {pixels.shape[1]} x {pixels.shape[0]} pixels" + (", input | edited" if args.side_by_side
                                                                          else ""))
    return 0


def _run(edit: Edit, method: str, model: torch.nn.Module | None, x: Tensor, missing: Tensor | None, sigma: float,
         seed: int, dataset: str, prompt: str | None = None) -> Tensor:
    """The edited image, float 1 x C x H x W in [0, 1]."""
    from prodlab.edit import by_prompt, diffusion_prior, restore  # as in cmd_edit: only this command needs them

    if method in ("vae", "dcgan"):
        cfg = restore.inversion(method)
        p = restore.vae_prior(model, cfg) if method == "vae" else restore.gan_prior(model, cfg, seed=seed)
    if edit is INPAINT:
        y = x.masked_fill(missing, 0.0)  # the rectangle is missing: nothing of it reaches the methods
        if method == "diffusion":
            return diffusion_prior.repaint(y, missing, seed=seed, model=model)
        if method == "prompt":
            return by_prompt.inpaint(model, y, missing[:, 0], [prompt], seed=seed)
        if method in ("vae", "dcgan"):
            return restore.inpaint(p, y, missing, dataset=dataset)
        fill = restore.diffusion_fill if method == "harmonic" else restore.mean_fill
        return fill(y, missing, dataset=dataset)
    if method == "diffusion":
        return diffusion_prior.sdedit(x, sigma, seed=seed, model=model)
    if method in ("vae", "dcgan"):
        return restore.denoise(p, x)
    if method == "gaussian":
        return restore.gaussian_filter(x, _tuned(method, sigma, dataset))
    return restore.median_filter(x, int(_tuned(method, sigma, dataset)))


def _tuned(kind: str, sigma: float, dataset: str) -> float:
    """The filter setting (Gaussian sigma or median window) of chapter 05's grid with the best mean PSNR on the
    catalogue's last validation images under Gaussian noise ``sigma``: ``edit.tuned_filter``, on any catalogue."""
    from prodlab.edit import evaluate, restore  # torchmetrics: only the classical filters' tuning needs it

    x = data.to_float(data.load("test", dataset=dataset)[0][-evaluate.VALIDATION_IMAGES:])
    y = degrade.gaussian_noise(x, sigma, 1)  # the noise tuned_filter tunes on (seed + 1, seed 0)
    apply = restore.gaussian_filter if kind == "gaussian" else (lambda t, v: restore.median_filter(t, int(v)))
    return max(evaluate.FILTER_GRID[kind], key=lambda v: float(evaluate.psnr(apply(y, v), x).mean()))


def _box(text: str, image: ImageSpec) -> tuple[int, int, int, int]:
    """``x,y,w,h`` checked against the product image: four integers, a non-empty box inside it, not all of it."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--inpaint {text!r}: expected four integers x,y,w,h (left, top, width, height in pixels "
                         f"of the {image.width} x {image.height} product image), e.g. --inpaint 8,8,12,12") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"--inpaint {text}: the box is empty (width and height must be at least 1)")
    if x < 0 or y < 0 or x + w > image.width or y + h > image.height:
        raise ValueError(f"--inpaint {text}: the box must lie inside the {image.width} x {image.height} product "
                         f"image (0 <= x, x + w <= {image.width}, 0 <= y, y + h <= {image.height})")
    if w == image.width and h == image.height:
        raise ValueError(f"--inpaint {text}: the box is the whole image; nothing would be left to fill it from")
    return x, y, w, h


def _missing(box: tuple[int, int, int, int], image: ImageSpec) -> Tensor:
    """Bool 1 x C x H x W, True inside the box (missing in every channel)."""
    x, y, w, h = box
    return degrade.box_mask(y, y + h, x, x + w, image=image)


def _check_out(out: Path, photo: Path) -> None:
    """Refuse, before any work, an ``--out`` that cannot become the PNG: another suffix, a directory, the photo
    itself, a folder that cannot be created or written to. Missing folders are created."""
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: --out takes a file name ending in .png (the edit is written as PNG)")
    if out.is_dir():
        raise ValueError(f"{out}: is a directory; --out takes the name of a PNG file")
    if out.exists() and photo.exists() and out.resolve() == photo.resolve():
        raise ValueError(f"{out}: is the photo itself; write the edit to another file")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{out}: cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: cannot be written: {folder} is not writable")


def _pixels(images: list[Tensor], scale: int) -> np.ndarray:
    """Images 1 x C x H x W side by side (a one-pixel white line between), enlarged ``scale`` times by repeating
    pixels: uint8 H x W x C."""
    line = torch.ones(*images[0].shape[:3], 1)
    row = torch.cat([part for image in images for part in (line, image)][1:], dim=3)
    pixels = data.to_uint8(row)[0].numpy()
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def _write_png(out: Path, pixels: np.ndarray) -> None:
    """``pixels`` (uint8 H x W x C) as a PNG, written atomically; one line if it cannot be."""
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    try:
        files.write_with(out, lambda tmp: picture.save(tmp, format="PNG"))
    except OSError as err:
        raise ValueError(f"{out}: cannot be written ({err.strerror or err})") from err


def _methods() -> str:
    """The methods of each edit, a table for the command's description."""
    width = max(len(name) for e in EDITS.values() for name in e.methods)
    lines = ["methods (--model NAME; the first is the default; all but the classical ones use the catalogue's "
             "trained model):"]
    for e in EDITS.values():
        for i, (name, what) in enumerate(e.methods.items()):
            lines.append(f"  {f'--{e.name}' if i == 0 else '':10s} {name:{width}s}  {what.removesuffix(' (default)')}")
    return "\n".join(lines)


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "edit", "edit a product photo: fill a rectangle, remove noise, recolour or re-pattern it, written "
                "as a PNG", cmd_edit,
                "python -m prodlab edit photo.jpg --inpaint 8,8,12,12 --side-by-side --out edited.png")
    p.description = f"{p.description}\n\n{_methods()}"
    default = datasets.spec(datasets.DEFAULT)
    p.add_argument("photo", type=Path, metavar="PHOTO",
                   help="any image file PIL can read; it becomes a product image of the catalogue's size first "
                        "(as search reads it)")
    which = p.add_mutually_exclusive_group(required=True)  # one edit per command
    which.add_argument("--inpaint", metavar="X,Y,W,H",
                       help="treat this rectangle as missing and fill it: left, top, width, height in pixels of "
                            "the product image, i.e. after the photo was converted to the catalogue's size "
                            f"({datasets.DEFAULT}: {default.width} x {default.height})")
    which.add_argument("--denoise", action="store_true", help="remove Gaussian noise of level --sigma")
    which.add_argument("--recolour", metavar="COLOUR",
                       help="the same product in this colour (a catalogue with colours: --data colour)")
    which.add_argument("--pattern", metavar="NAME",
                       help="the same product with this pattern (a catalogue with patterns: --data colour)")
    p.add_argument("--model", choices=list(dict.fromkeys(name for e in EDITS.values() for name in e.methods)),
                   default=None, metavar="NAME", help="how to edit: one of the methods above (default: the first)")
    p.add_argument("--prompt", default=None, metavar="WORDS",
                   help="--inpaint --model prompt: what to draw in the box, in the catalogue's words (e.g. 'a red "
                        "striped dress')")
    p.add_argument("--sigma", type=float, default=None, metavar="S",
                   help=f"--denoise: the noise's standard deviation, pixels in 0..1 (default {DEFAULT_SIGMA}, "
                        "chapter 05's)")
    p.add_argument("--data", default=datasets.DEFAULT, metavar="NAME",
                   help="the catalogue whose models edit (default: Fashion-MNIST; python -m prodlab data list); "
                        "vae, dcgan and diffusion need a model trained on it")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random methods (default 0): same seed, same PNG")
    p.add_argument("--out", type=Path, required=True, metavar="OUT.png",
                   help="the PNG to write (uint8, the catalogue's channels; missing folders are created)")
    p.add_argument("--scale", type=int, default=4, metavar="N",
                   help=f"enlarge the image this many times, nearest neighbour (default 4, at most {MAX_SCALE})")
    p.add_argument("--side-by-side", action="store_true",
                   help="write input | edited (the inpainted rectangle shown grey in the input)")
