"""Product search (chapter 06, §2.4 item 3): the figures of notebooks/06_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import (
    cache,
    checkpoints,
    config,
    data,
    imageio,
    plotting,
    search,
)
from prodlab.figures import register, register_variants
from prodlab.plotting import as_numpy, finish, new_figure, show_image

HIT, MISS = "#55a868", "#c44e52"  # result of the query's class / of another class


def retrieval_rows(
    queries: torch.Tensor | np.ndarray, query_titles: Sequence[str], results: Sequence[torch.Tensor | np.ndarray],
    result_titles: Sequence[Sequence[str]], hits: Sequence[Sequence[bool]] | None, suptitle: str,
    cell: float = 0.95,
) -> Figure:
    """One row per query: the query, a gap, then its results best first, framed green (hit) or red (miss).

    ``hits`` None (the query's class is unknown): no frames.
    """
    q = as_numpy(queries)
    rows = [as_numpy(r) for r in results]
    k = max(len(r) for r in rows)
    fig = new_figure((k + 1.3) * cell, len(q) * cell * 1.32 + 0.35)
    axes = np.atleast_2d(fig.subplots(len(q), k + 2, width_ratios=[1, 0.3] + [1] * k))
    for r in range(len(q)):
        show_image(axes[r, 0], q[r], query_titles[r])
        axes[r, 1].axis("off")
        for c in range(k):
            ax = axes[r, c + 2]
            show_image(ax, rows[r][c], result_titles[r][c])
            for spine in ax.spines.values() if hits is not None else ():
                spine.set_visible(True)
                spine.set_color(HIT if hits[r][c] else MISS)
                spine.set_linewidth(2.5)
    fig.suptitle(suptitle)
    return finish(fig)


def precision_curves(curves: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Mean precision@k against k (log scale), one line per embedding, P@10 in the legend."""
    fig = new_figure(7.5, 3.8)
    ax = fig.subplots()
    for name, curve in sorted(curves.items(), key=lambda item: -item[1][9]):
        k = np.arange(1, len(curve) + 1)
        ax.plot(k, curve, lw=2, label=f"{name} (P@10 = {curve[9]:.3f})")
    ax.axvline(10, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
    ax.set_xlabel("k: results looked at")
    ax.set_ylabel("precision@k (same class)")
    ax.set_ylim(top=1.0)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return finish(fig)


def tsne_map(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """A t-SNE map coloured by class: ``latent_scatter`` with axes that say they carry no units."""
    fig = plotting.latent_scatter(points, labels, class_names, title)
    ax = fig.axes[0]
    ax.set_xlabel("t-SNE 1 (no units: only neighbourhoods mean something)")
    ax.set_ylabel("t-SNE 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig





SEARCH_QUERIES = 10_000  # test images used as queries (quick mode: 1,000)
SEARCH_K = 8  # results shown per query
MNIST_FIT = 20  # MNIST's framing: the digit's longest side spans 20 pixels of the thumbnail's 28
VARIANT_ITEM, PHOTO_OF = 0, 0  # the catalogue item that is edited, the test product that is photographed


def search_queries() -> int:
    return config.budget(SEARCH_QUERIES, 1_000)


def retrieval_figure(emb, index, queries: torch.Tensor, reference: torch.Tensor | None, query_titles: list[str],
                     suptitle: str, k: int = SEARCH_K) -> Figure:
    """Queries and their top ``k`` catalogue items, framed green where an item has the ``reference`` class of its
    query, red where not (no frames when ``reference`` is None: a user's image has no known class)."""
    scores, ids = search.query(emb, index, queries, k)
    catalogue = search.catalogue()[0]
    names = data.spec().class_names
    titles = [[f"{names[index.labels[i]]}\n{s:.2f}" for i, s in zip(row.tolist(), sc.tolist(), strict=True)]
              for row, sc in zip(ids, scores, strict=True)]
    hits = None if reference is None else (index.labels[ids] == reference[:, None]).tolist()
    return retrieval_rows(data.as_batch(queries), query_titles, [catalogue[row] for row in ids], titles,
                          hits, suptitle)


@cache.computation("search-topk", "the top 100 catalogue ids of the first 10,000 test queries, best embedding")
def topk_result() -> cache.Result:
    """Scores and ids (queries x ``search.K_EVAL``) of the first ``SEARCH_QUERIES`` test images (quick mode: 1,000)
    searched with ``search.BEST``: what the per-class precision and the good/failed figures read; cached."""
    emb, index = search.catalogue_index(search.BEST)
    scores, ids = search.query(emb, index, search.query_set(search_queries())[0], search.K_EVAL)
    return {"scores": scores, "ids": ids}


@cache.computation("search-photos", "P@10 of 1,000 test products turned into shop photos and back, two framings")
def photo_result() -> cache.Result:
    """Mean precision@10 of the first 1,000 test images (quick: 200) as stored, and as JPEG shop photos turned back
    into thumbnails with Zalando's framing (longest side 28 px, the whole side) and MNIST's (20 px); cached."""
    emb, index = search.catalogue_index(search.BEST)
    images, labels = search.query_set(config.budget(1_000, 200))
    photos = [imageio.shop_photo(image) for image in images]
    p10 = {"thumbnails as stored": search.mean_precision(emb, index, images, labels)}
    side = data.spec().height
    for fit in (side, MNIST_FIT):
        x = torch.stack([imageio.to_product_image(p, imageio.Framing(size=side, fit=fit)) for p in photos])
        p10[f"photos, product {fit} px long"] = search.mean_precision(emb, index, x, labels)
    return p10


@cache.computation("search-recovery", "share of edited catalogue products whose original is in the top 10")
def recovery_result() -> cache.Result:
    """For every available embedding and edit of ``search.EDITS``: the share of 1,000 catalogue items (quick: 300),
    spread over the catalogue, whose edited image finds the original in its top 10; cached."""
    n = config.budget(1_000, 300)
    items = torch.arange(n) * (len(search.catalogue()[1]) // n)
    return {name: {edit: search.recovery(*search.catalogue_index(name), items, fn) for edit, fn in search.EDITS.items()}
            for name in search.available()}


def search_examples(kind: str) -> Figure:
    """Five perfect queries of distinct classes ("good") or the five worst queries ("failed"), best embedding."""
    emb, index = search.catalogue_index(search.BEST)
    images, labels = search.query_set(search_queries())
    ids = topk_result()["ids"][:, :SEARCH_K]
    picks = search.good_and_failed(index, ids, labels, 5, SEARCH_K)[0 if kind == "good" else 1]
    titles = [f"query #{int(i)}\n{data.spec().class_names[labels[i]]}" for i in picks]
    what = "all 8 results of the query's class" if kind == "good" else "the lowest precision@8"
    return retrieval_figure(emb, index, images[picks], labels[picks], titles,
                            f"{kind.capitalize()} queries ({what}): top 8 of 60,000, "
                            f"{search.EMBEDDINGS[search.BEST].title}\ngreen: same class as the query, red: another "
                            "class; number: cosine similarity")


register_variants(search_examples, "§2.4 item 3", "06_search", {
    "good": ("search-good", "Search by image: queries that work",
             "Test queries (first 10,000; quick 1,000) whose top 8 by the classifier's features all share their "
             "class."),
    "failed": ("search-failed", "Search by image: queries that fail",
               "The 5 test queries (first 10,000; quick 1,000) with the lowest precision@8, classifier features."),
})


@cache.computation("search-benchmark", "P@k and mAP of every embedding, 10,000 test queries")
def benchmark_result() -> cache.Result:
    """``search.benchmark`` over the first ``SEARCH_QUERIES`` test queries (quick mode: 1,000); cached."""
    return search.benchmark(search_queries())


@cache.computation("search-map", "t-SNE of 3,000 catalogue products' classifier features")
def map_result() -> cache.Result:
    """``search.catalogue_map`` of 3,000 random catalogue items (quick mode: 1,000); cached."""
    points, labels = search.catalogue_map(search.embedder(search.BEST), config.budget(3_000, 1_000))
    return {"points": torch.as_tensor(points), "labels": labels}


@register("search-precision", "Precision@k of every embedding", "§2.4 item 3", "06_search",
          "Mean precision@k, k = 1..100, of the first 10,000 test images (quick 1,000) as queries, per embedding.")
def search_precision(results: dict | None = None) -> Figure:
    """Precision curves of ``search.benchmark`` results (computed here unless the notebook passes its own)."""
    results = results or benchmark_result()
    curves = {f"{search.EMBEDDINGS[name].title} ({r['dim']}-d)": r["precision_curve"]
              for name, r in results.items() if r["available"]}
    n = next(r["n_queries"] for r in results.values() if r["available"])
    return precision_curves(curves, f"Precision@k: {n:,} test queries against 60,000 catalogue products")


@register("search-map", "A map of the catalogue in the classifier's feature space", "§2.4 item 3", "06_search",
          "t-SNE (perplexity 30, seed 0) of 3,000 random catalogue items' classifier features (quick 1,000).")
def search_map() -> Figure:
    n = config.budget(3_000, 1_000)
    found = map_result()
    return tsne_map(found["points"].numpy(), found["labels"].numpy(), data.spec().class_names,
                          f"t-SNE map of {n:,} catalogue products ({search.EMBEDDINGS[search.BEST].title})")


@register("search-variants", "Find products like this variant", "§2.4 item 3", "06_search",
          "A JPEG shop photo of a test product, edits of catalogue item 0 and (when shipped) generated products, "
          "searched with the classifier's features; green: the class the classifier predicts for the query.")
def search_variants() -> Figure:
    emb, index = search.catalogue_index(search.BEST)
    variants = search.variant_queries(VARIANT_ITEM, PHOTO_OF)
    x = torch.stack(list(variants.values()))
    classifier = checkpoints.load("classifier")
    predicted = classifier.predict(x)
    names = classifier.cfg.image.class_names
    titles = [f"{name}\n→ {names[p]}" for name, p in zip(variants, predicted.tolist(), strict=True)]
    return retrieval_figure(emb, index, x, predicted, titles,
                            "Queries that are not catalogue thumbnails: a shop photo, edits of catalogue item "
                            f"{VARIANT_ITEM}, generated products\n→ the class the classifier sees in the query; "
                            "green: result of that class, red: another; number: cosine similarity")


