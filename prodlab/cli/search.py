"""``python -m prodlab search PHOTO``: the catalogue products that look most like a photo (notebook 06, §2.4 item
3), in Fashion-MNIST or in any imported catalogue (``--data NAME``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from prodlab import data, datasets
from prodlab.cli.common import command


def cmd_search(args: argparse.Namespace) -> int:
    """Find the catalogue products that look most like an image file, or that a prompt in words describes."""
    from prodlab import search  # FAISS and scikit-learn: only this command needs them

    if (args.image is None) == (args.text is None):
        raise ValueError("give a photo or --text PROMPT, one of the two")
    if args.text is not None:
        return _text(args, search.search_text(args.text, args.data, k=args.k))
    hits = search.search_photo(args.image, dataset=args.data, k=args.k, embedding=args.embedding, kind=args.index)
    if args.grid:
        _grid(args, hits)
    if args.json:
        print(json.dumps(hits))
        return 0
    print(f"Top {args.k} catalogue products of {args.data} for {args.image} ({hits[0]['embedding']} embedding):")
    for rank, hit in enumerate(hits, 1):
        print(f"  {rank:3d}. id {hit['id']:6d}  {hit['class']:16s} score {hit['score']:.4f}")
    return 0


def _text(args: argparse.Namespace, hits: list[dict]) -> int:
    """Print the products found for a prompt (JSON with --json)."""
    if args.json:
        print(json.dumps(hits))
        return 0
    print(f"Top {args.k} catalogue products of {args.data} for {args.text!r} (text-image model):")
    for rank, hit in enumerate(hits, 1):
        words = " ".join(str(v) for k, v in hit.items() if k not in ("id", "label", "class", "score"))
        print(f"  {rank:3d}. id {hit['id']:6d}  {hit['class']:12s} {words:18s} score {hit['score']:.4f}")
    return 0


def _grid(args: argparse.Namespace, hits: list[dict]) -> None:
    """The query and its results as one PNG."""
    from prodlab import imageio, plotting  # matplotlib: only --grid draws

    image = data.spec(args.data)
    query = imageio.user_image(args.image, image)
    found = data.load("train", dataset=args.data)[0][[hit["id"] for hit in hits]]
    images = torch.cat([data.to_uint8(query[None]), found])
    fig = plotting.image_grid(images, ncols=len(hits) + 1,
                              titles=["query", *(f"{h['class']}\n{h['score']:.2f}" for h in hits)])
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.grid, facecolor="white")


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "search", "find the catalogue products that look like an image file, or that words describe",
                cmd_search, "python -m prodlab search photo.jpg --k 8 --grid results.png; "
                "python -m prodlab search --text \"a blue striped shirt\" --data colour")
    p.add_argument("image", type=Path, nargs="?",
                   help="any image file PIL can read (photo, PNG with transparency, ...)")
    p.add_argument("--text", metavar="PROMPT",
                   help="search by words instead of a photo, with the text-image model (python -m prodlab train clip)")
    p.add_argument("--data", default=datasets.DEFAULT, metavar="NAME",
                   help="the catalogue to search (default: Fashion-MNIST; python -m prodlab data list)")
    p.add_argument("--k", type=int, default=8, help="number of results (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, label, class, score}")
    p.add_argument("--grid", type=Path, help="also save the query and its results as a PNG")
    p.add_argument("--embedding", default=None,
                   help="pixels, pca, vae, dcgan or classifier (default: the best available for the catalogue)")
    p.add_argument("--index", choices=("exact", "approx"), default="exact",
                   help="exact (default): every catalogue vector is compared; approx: the FAISS IVF index, "
                        "built and cached on first use")
