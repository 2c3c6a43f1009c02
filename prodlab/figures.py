"""The figure catalogue: every figure of the workbook, registered once, reproduced by one command.

``python -m prodlab figures [--out DIR] [--only ID]`` calls each registered function, saves its PNG and
writes ``index.md`` listing the figure, the article section it illustrates and how it was made.
A figure function takes no arguments, loads what it needs through ``prodlab`` and returns a Figure
built by a ``prodlab.plots`` helper; notebooks call the same helpers, so the catalogue and the book agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from prodlab import config, data, plots


@dataclass(frozen=True)
class FigureSpec:
    id: str
    title: str
    section: str  # the article section it illustrates, e.g. "§3.3 step 2"
    notebook: str  # where the figure is discussed
    how: str  # how it was made, one sentence
    make: Callable[[], Figure]


REGISTRY: dict[str, FigureSpec] = {}


def register(id: str, title: str, section: str, notebook: str, how: str):
    """Decorator: add a no-argument figure function to the catalogue under ``id``."""

    def wrap(make: Callable[[], Figure]) -> Callable[[], Figure]:
        if id in REGISTRY:
            raise ValueError(f"figure id {id!r} registered twice")
        REGISTRY[id] = FigureSpec(id, title, section, notebook, how, make)
        return make

    return wrap


def write_catalogue(out: Path = config.FIGURES_DIR, only: str | None = None) -> list[Path]:
    """Render the registered figures (or just ``only``) into ``out`` and (re)write ``out/index.md``."""
    if only is not None and only not in REGISTRY:
        raise KeyError(f"no figure {only!r}; known: {', '.join(sorted(REGISTRY))}")
    out.mkdir(parents=True, exist_ok=True)
    specs = [REGISTRY[only]] if only else list(REGISTRY.values())
    written, rows = [], []
    for spec in specs:
        start = time.perf_counter()
        fig = spec.make()
        path = out / f"{spec.id}.png"
        fig.savefig(path, facecolor="white")
        seconds = time.perf_counter() - start
        written.append(path)
        rows.append((spec, seconds))
        print(f"  {spec.id:32s} {seconds:6.1f} s  {path}")
    (out / "index.md").write_text(_index(rows, complete=only is None), encoding="utf-8")
    return written


GALLERY = ("gan-samples-per-class", "edit-class-transfer", "edit-inpaint-center", "edit-directions-cdcgan",
           "vae-manifold", "search-good")  # the README's gallery, in its order
GALLERY_DIR = config.REPO_ROOT / "docs" / "gallery"


def write_gallery(source: Path = config.FIGURES_DIR, dest: Path = GALLERY_DIR, width: int = 640) -> list[Path]:
    """Small copies (``width`` pixels wide at most) of the ``GALLERY`` figures rendered in ``source``, for the
    README; a missing figure raises ``FileNotFoundError`` naming the command that makes it."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for fid in GALLERY:
        path = source / f"{fid}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run python -m prodlab figures --out {source} first")
        with Image.open(path) as img:
            img.thumbnail((width, width * 4))
            img.save(dest / path.name, optimize=True)
        written.append(dest / path.name)
    return written


def _index(rows: list[tuple[FigureSpec, float]], complete: bool) -> str:
    lines = [
        "# prodlab figure catalogue",
        "",
        "Made by `python -m prodlab figures`" + ("" if complete else " (partial run: `--only`)") + ".",
        f"Quick mode: {'on (reduced budgets)' if config.quick() else 'off'}.",
        "",
        "| figure | article section | notebook | how it was made | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| [{s.title}]({s.id}.png) | {s.section} | {s.notebook} | {s.how} | {sec:.1f} |" for s, sec in rows
    ]
    lines.append("")
    for spec, _ in rows:
        lines += [f"## {spec.title}", "", f"![{spec.title}]({spec.id}.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- notebook 00: the products (§1, §3.3 steps 1-2)

SHOWCASE_SEED = 0  # which products the data figures show


def showcase(per_class: int = 1, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class in ``split`` (a fixed, reproducible choice)."""
    images, labels = data.load(split)
    index = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(data.CLASS_NAMES))])
    return images[index], labels[index]


@register("data-samples", "Samples of every product class", "§1, §3.3 step 1", "00_products",
          "Eight training images of each class, drawn with a fixed seed.")
def data_samples() -> Figure:
    images, labels = data.load("train")
    gen = torch.Generator().manual_seed(SHOWCASE_SEED)
    rows = []
    for c in range(len(data.CLASS_NAMES)):
        idx = torch.nonzero(labels == c).flatten()
        rows.append(images[idx[torch.randperm(len(idx), generator=gen)[:8]]])
    return plots.labelled_rows(rows, data.CLASS_NAMES, suptitle="Fashion-MNIST: 8 products per class")


@register("data-class-means", "Per-class mean images", "§3.3 step 1", "00_products",
          "Pixel-wise mean of all 6,000 training images of each class.")
def data_class_means() -> Figure:
    means = data.class_means(*data.load("train"))
    return plots.image_grid(means, ncols=5, titles=list(data.CLASS_NAMES), suptitle="The average product of each class",
                            cell=1.5)


@register("data-class-balance", "Images per class", "§3.3 step 1", "00_products",
          "Label counts of the training and test splits.")
def data_class_balance() -> Figure:
    counts = {split: torch.bincount(data.load(split)[1], minlength=10).tolist() for split in data.SPLITS}
    return plots.class_balance(counts, data.CLASS_NAMES)


@register("data-mirror-asymmetry", "Which classes survive a horizontal flip", "§3.3 step 2", "00_products",
          "Relative L2 distance between each class-mean training image and its mirror image.")
def data_mirror_asymmetry() -> Figure:
    asym = data.mirror_asymmetry(data.class_means(*data.load("train")))
    return plots.bar_chart(asym.tolist(), data.CLASS_NAMES, "||mean - mirror(mean)|| / ||mean||",
                           "Mirror asymmetry of the average product (higher: a flip changes the product)")


@register("data-normalisation", "Normalisation of pixel values", "§3.3 step 1", "00_products",
          "Histogram of test-set pixels as stored (uint8) and after scaling to [-1, 1] for a tanh generator.")
def data_normalisation() -> Figure:
    images = data.load("test")[0][:2000]
    return plots.pixel_histograms(images.float(), data.normalize(data.to_float(images)),
                                  "stored: uint8 0..255", "normalised: [-1, 1]")


@register("data-augmentation", "Augmentation steps on the same products", "§3.3 step 2", "00_products",
          "One test image per class through each augmentation alone (seeded); vertical flip shown as the wrong choice.")
def data_augmentation() -> Figure:
    images, _ = showcase()
    x = data.to_float(images)
    steps = {}
    for name, transform in data.augmentations().items():
        config.seed_everything(SHOWCASE_SEED)
        steps[name] = torch.stack([transform(img) for img in x])
    return plots.augmentation_table(x, steps, suptitle="§3.3 step 2: each augmentation on the same ten products")


# ---------------------------------------------------------------- notebook 01: losses (§2.2, §2.3, §3.1.2, §4)


@register("losses-generator-curves", "Saturating vs non-saturating generator loss", "§2.2, §4 L_G", "01_losses",
          "Both generator losses of one fake and their autograd derivatives w.r.t. the logit, over D(G(z)).")
def losses_generator_curves() -> Figure:
    from prodlab import toy

    return plots.generator_loss_curves(*toy.generator_loss_profiles())


@register("losses-generator-gradients", "Generator gradient while D learns to reject the fakes", "§4 L_G",
          "01_losses", "Toy-ring MLPs, seed 0: D trained alone for 300 steps; G's weight-gradient norm per loss.")
def losses_generator_gradients() -> Figure:
    from prodlab import toy

    return plots.generator_gradient_norms(*toy.generator_gradient_norms())


@register("losses-optimal-discriminator", "Trained discriminator vs the optimal D*", "§2.2", "01_losses",
          "An MLP trained with L_D on N(0,1) vs N(2,0.5^2) (seed 0), against p_data / (p_data + p_g).")
def losses_optimal_discriminator() -> Figure:
    from prodlab import toy

    r = toy.train_1d_discriminator()
    return plots.optimal_discriminator(r.x, r.p_data, r.p_gen, r.d_trained, r.d_star, r.bulk)


@register("losses-jsd-identity", "V(D*, G) = 2 JSD - log 4", "§2.2", "01_losses",
          "V(D*, G) by adaptive quadrature and the JSD by SciPy's jensenshannon on a grid, for shifted Gaussians.")
def losses_jsd_identity() -> Figure:
    from prodlab import toy

    return plots.jsd_identity(*toy.jsd_identity(toy.JSD_SHIFTS))


@register("losses-toy-gan", "Toy GAN on a ring: mode coverage per generator loss", "§3.1.2, §4", "01_losses",
          "MLP GAN on 8 Gaussians, both generator losses, seeds 0-2; 2,000 generated points per run.")
def losses_toy_gan() -> Figure:
    from prodlab import toy

    cfg = toy.ToyGANConfig()
    runs = toy.toy_gan_runs(toy.TOY_SEEDS, cfg)
    return plots.toy_gan_samples(
        toy.ring_modes(cfg), {k: [r.samples for r in v] for k, v in runs.items()},
        {k: [r.covered for r in v] for k, v in runs.items()}, {k: [r.quality for r in v] for k, v in runs.items()},
        toy.TOY_SEEDS, cfg.near,
    )


@register("losses-kl-monte-carlo", "Closed-form KL vs Monte Carlo", "§2.3, §4", "01_losses",
          "KL(q || N(0, I)) of an 8-dim diagonal Gaussian: closed form vs fresh Monte-Carlo samples (seed 0).")
def losses_kl_monte_carlo() -> Figure:
    from prodlab import toy

    return plots.mc_convergence(*toy.kl_monte_carlo(*toy.kl_example(), toy.KL_SIZES))


@register("losses-gradient-variance", "Reparameterisation vs REINFORCE gradient variance", "§2.3, §3.2.2",
          "01_losses", "d/dmu E[z^2], z ~ N(2, 1): variance over 4,000 repeats per sample count, with theory.")
def losses_gradient_variance() -> Figure:
    from prodlab import toy

    g = toy.gradient_variance()
    return plots.gradient_variance(g.sizes, g.var, g.var_theory)


# ---------------------------------------------------------------- notebook 03: VAEs (§2.3, §3.2)

VAE_SWEEP_IMAGES = 6  # test images (and samples) shown per model in the beta-sweep figure


@register("vae-reconstructions", "Test products and their VAE reconstructions", "§2.3, §3.2.2 steps 2-4", "03_vae",
          "The first test image of each class, decoded from its posterior mean by the shipped vae and vae2d.")
def vae_reconstructions() -> Figure:
    from prodlab import checkpoints

    x = data.to_float(showcase()[0])
    rows = [x, checkpoints.load("vae").reconstruct(x), checkpoints.load("vae2d").reconstruct(x)]
    return plots.labelled_rows(rows, ["test image", "vae (16-d)", "vae2d (2-d)"],
                               suptitle="Reconstructions: encode to the mean of q(z|x), decode")


@register("vae-samples", "Random products from the VAE", "§2.3, §3.2.2 step 8", "03_vae",
          "40 samples of the shipped vae (z ~ N(0, I), seed 0), each the decoder's mean image.")
def vae_samples() -> Figure:
    from prodlab import checkpoints

    images, _ = checkpoints.generate("vae", 40, seed=0)
    return plots.image_grid(images, ncols=10, suptitle="vae: decoded z ~ p(z) = N(0, I)")


@register("vae-manifold", "The 2-d latent manifold of products", "§2.3, §3.2", "03_vae",
          "The shipped vae2d decodes a 15 x 15 grid of latent points at the prior's quantiles 3 % .. 97 %.")
def vae_manifold() -> Figure:
    from prodlab import checkpoints
    from prodlab.models import vae as vae_models

    coords, z = vae_models.latent_grid(15)
    tiles = checkpoints.load("vae2d").decode(z).detach()
    return plots.latent_manifold(tiles, coords.numpy(), "vae2d: decoded latent grid (equal prior mass per cell)")


@register("vae-latent", "The test set in the 2-d latent space", "§2.3, §3.2", "03_vae",
          "Posterior means of the 10,000 test images under the shipped vae2d, coloured by class.")
def vae_latent() -> Figure:
    from prodlab import checkpoints

    images, labels = data.load("test")
    z = checkpoints.load("vae2d").embed(data.to_float(images))
    return plots.latent_scatter(z.numpy(), labels.numpy(), data.CLASS_NAMES,
                                "vae2d: test products embedded by the encoder (mean of q(z|x))")


def beta_sweep_figure(rows: list[dict]) -> Figure:
    """The beta-sweep figure from the rows of ``train.beta_sweep`` (the notebook draws its live run with it)."""
    x = data.to_float(showcase()[0][:VAE_SWEEP_IMAGES])
    recons = [row["model"].reconstruct(x) for row in rows]
    samples = [row["model"].sample(VAE_SWEEP_IMAGES, torch.Generator().manual_seed(0)) for row in rows]
    return plots.beta_sweep(rows, recons, samples, x)


@register("vae-beta-sweep", "Rate against distortion: what beta does", "§2.3, §4 (VAE loss)", "03_vae",
          "Small VAEs (16-d) trained for 2 epochs on 10,000 images with beta = 0.1 .. 784, measured on 2,000 "
          "test images (train.beta_sweep).")
def vae_beta_sweep() -> Figure:
    from prodlab import train

    return beta_sweep_figure(train.beta_sweep())


@register("vae-kl-per-dim", "Which latent dimensions are used", "§2.3, §4 (VAE loss)", "03_vae",
          "Average KL to the prior per latent dimension on the first 1,000 test images: the shipped vae, and two "
          "small VAEs trained with the reconstruction summed over pixels and averaged over pixels.")
def vae_kl_per_dim() -> Figure:
    from prodlab import checkpoints, train

    return kl_per_dim_figure({"shipped vae": checkpoints.load("vae"),
                              "small, recon summed": train.train_small_vae(reduction="sum")[0],
                              "small, recon averaged (trap)": train.train_small_vae(reduction="mean")[0]})


def kl_per_dim_figure(models: dict) -> Figure:
    """KL per latent dimension of each VAE in ``models`` (name -> model) on the first 1,000 test images."""
    from prodlab.models import vae as vae_models

    x = data.to_float(data.load("test")[0][:1000])
    kl = {name: vae_models.kl_per_dimension(m, x).numpy() for name, m in models.items()}
    return plots.kl_per_dimension(kl, vae_models.ACTIVE_KL)


# ---------------------------------------------------------------- notebook 04: evaluation (§2.4, §4)

EVAL_N = 10_000  # samples per set in the metric figures (quick mode: 2,000)
EVAL_METRICS = {"fid": "FID (lower is better)", "kid": "KID (lower is better)",
                "precision": "precision (higher is better)", "recall": "recall (higher is better)"}


def eval_sweeps() -> dict[str, list[dict]]:
    """Every sanity sweep of ``metrics.SANITY_LEVELS`` on ``EVAL_N`` training images against the test set."""
    from prodlab import metrics

    n = config.budget(EVAL_N, 2_000)
    return {kind: metrics.sanity_sweep(kind, n=n) for kind in metrics.SANITY_LEVELS}


@register("eval-confusion", "Confusion matrix of the product classifier", "§2.4, §4", "04_evaluation",
          "Shipped classifier on the 10,000 test images; rows are true classes, cells the % of that class.")
def eval_confusion() -> Figure:
    from prodlab import metrics

    report = metrics.classifier_report(metrics.ruler().model, "test")
    return plots.confusion_matrix(report["test_confusion"], data.CLASS_NAMES,
                                  f"Product classifier on the test set: {100 * report['test_accuracy']:.1f} % correct")


@register("eval-errors", "The classifier's most confident errors", "§2.4", "04_evaluation",
          "The 12 misclassified test images with the highest softmax probability of the wrong class.")
def eval_errors() -> Figure:
    from prodlab import metrics

    errors = metrics.confident_errors(metrics.ruler(), k=12)
    titles = [f"{data.CLASS_NAMES[t]}\n→ {data.CLASS_NAMES[p]} {100 * c:.0f}%"
              for t, p, c in zip(errors["labels"], errors["preds"], errors["confidence"], strict=True)]
    return plots.image_grid(errors["images"], ncols=6, titles=titles, cell=1.45,
                            suptitle="Most confident errors (true class → predicted class, confidence)")


@register("eval-degradations", "Blur and noise levels of the sanity checks", "§4", "04_evaluation",
          "Eight test images under each Gaussian blur and Gaussian noise level used in the sanity sweeps.")
def eval_degradations() -> Figure:
    from prodlab import metrics

    images, _ = showcase()
    x = images[[0, 1, 3, 5, 6, 7, 8, 9]]
    rows, labels = [], []
    for sigma in metrics.SANITY_LEVELS["blur"][1:]:
        rows.append(metrics.blur(x, sigma))
        labels.append(f"blur σ={sigma:g}")
    for sigma in metrics.SANITY_LEVELS["noise"][1:]:
        rows.append(metrics.add_noise(x, sigma))
        labels.append(f"noise σ={sigma:g}")
    return plots.labelled_rows([data.to_float(x), *rows], ["original", *labels],
                               suptitle="Degradations applied on purpose to real images")


@register("eval-sanity", "How each metric reacts to degraded real images", "§4", "04_evaluation",
          "Training images (10,000; quick 2,000) blurred, noised, with classes removed or collapsed to few "
          "distinct images, each set measured against the 10,000 test images.")
def eval_sanity() -> Figure:
    return sanity_figure(eval_sweeps())


def sanity_figure(sweeps: dict[str, list[dict]]) -> Figure:
    """The sanity sweeps as curves (the notebook passes the sweeps it computed)."""
    from prodlab import metrics

    return plots.metric_curves(sweeps, EVAL_METRICS, metrics.SANITY_LABELS, log_x=("collapse",),
                               reversed_x=("collapse",), suptitle="Sanity check of the ruler: real images degraded "
                               "on purpose (left end of each row = undegraded = the floor)")


@register("eval-floor", "The floor of FID and KID: real against real", "§4", "04_evaluation",
          "FID and KID of N random training images vs the test set, 5 independent draws per N.")
def eval_floor() -> Figure:
    from prodlab import metrics

    return plots.floor_plot(metrics.floor_curve(), "What a perfect generator would score: FID is biased at small N, "
                            "KID is not")


@register("eval-coverage", "Predicted classes of healthy, class-dropping and collapsed sets", "§4", "04_evaluation",
          "Share of each predicted class among 10,000 training images (quick 2,000): untouched, 3 classes removed, "
          "collapsed to 10 distinct images.")
def eval_coverage() -> Figure:
    from prodlab import metrics

    r = metrics.ruler()
    n = config.budget(EVAL_N, 2_000)
    sets = {"real images": metrics.real_sample(n), "3 classes removed": metrics.degraded("drop", 3, n),
            "10 distinct images": metrics.degraded("collapse", 10 / n, n)}
    shares = {name: metrics.class_coverage(r.predict(r.features(x)))["class_share"] for name, x in sets.items()}
    return plots.class_shares(shares, data.CLASS_NAMES, "Which classes does the classifier see in each sample set?")


# ---------------------------------------------------------------- notebook 06: product search (§2.4 item 3)

SEARCH_QUERIES = 10_000  # test images used as queries (quick mode: 1,000)
SEARCH_K = 8  # results shown per query
VARIANT_ITEM, PHOTO_OF = 0, 0  # the catalogue item that is edited, the test product that is photographed


def search_queries() -> int:
    return config.budget(SEARCH_QUERIES, 1_000)


def retrieval_figure(emb, index, queries: torch.Tensor, reference: torch.Tensor | None, query_titles: list[str],
                     suptitle: str, k: int = SEARCH_K) -> Figure:
    """Queries and their top ``k`` catalogue items, framed green where an item has the ``reference`` class of its
    query, red where not (no frames when ``reference`` is None: a user's image has no known class)."""
    from prodlab import search

    scores, ids = search.query(emb, index, queries, k)
    catalogue = search.catalogue()[0]
    titles = [[f"{data.CLASS_NAMES[index.labels[i]]}\n{s:.2f}" for i, s in zip(row.tolist(), sc.tolist(), strict=True)]
              for row, sc in zip(ids, scores, strict=True)]
    hits = None if reference is None else (index.labels[ids] == reference[:, None]).tolist()
    return plots.retrieval_rows(search.as_batch(queries), query_titles, [catalogue[row] for row in ids], titles,
                                hits, suptitle)


def search_examples(kind: str) -> Figure:
    """Five perfect queries of distinct classes ("good") or the five worst queries ("failed"), best embedding."""
    from prodlab import search

    emb, index = search.catalogue_index(search.BEST)
    images, labels = search.query_set(search_queries())
    _, ids = search.query(emb, index, images, SEARCH_K)
    picks = search.good_and_failed(index, ids, labels, 5, SEARCH_K)[0 if kind == "good" else 1]
    titles = [f"query #{int(i)}\n{data.CLASS_NAMES[labels[i]]}" for i in picks]
    what = "all 8 results of the query's class" if kind == "good" else "the lowest precision@8"
    return retrieval_figure(emb, index, images[picks], labels[picks], titles,
                            f"{kind.capitalize()} queries ({what}): top 8 of 60,000, "
                            f"{search.EMBEDDINGS[search.BEST].title}\ngreen: same class as the query, red: another "
                            "class; number: cosine similarity")


@register("search-good", "Search by image: queries that work", "§2.4 item 3", "06_search",
          "Test queries (first 10,000; quick 1,000) whose top 8 by the classifier's features all share their class.")
def search_good() -> Figure:
    return search_examples("good")


@register("search-failed", "Search by image: queries that fail", "§2.4 item 3", "06_search",
          "The 5 test queries (first 10,000; quick 1,000) with the lowest precision@8, classifier features.")
def search_failed() -> Figure:
    return search_examples("failed")


@register("search-precision", "Precision@k of every embedding", "§2.4 item 3", "06_search",
          "Mean precision@k, k = 1..100, of the first 10,000 test images (quick 1,000) as queries, per embedding.")
def search_precision(results: dict | None = None) -> Figure:
    """Precision curves of ``search.benchmark`` results (computed here unless the notebook passes its own)."""
    from prodlab import search

    results = results or search.benchmark(search_queries())
    curves = {f"{search.EMBEDDINGS[name].title} ({r['dim']}-d)": r["precision_curve"]
              for name, r in results.items() if r["available"]}
    n = next(r["n_queries"] for r in results.values() if r["available"])
    return plots.precision_curves(curves, f"Precision@k: {n:,} test queries against 60,000 catalogue products")


@register("search-map", "A map of the catalogue in the classifier's feature space", "§2.4 item 3", "06_search",
          "t-SNE (perplexity 30, seed 0) of 3,000 random catalogue items' classifier features (quick 1,000).")
def search_map() -> Figure:
    from prodlab import search

    n = config.budget(3_000, 1_000)
    points, labels = search.catalogue_map(search.embedder(search.BEST), n)
    return plots.tsne_map(points, labels.numpy(), data.CLASS_NAMES,
                          f"t-SNE map of {n:,} catalogue products ({search.EMBEDDINGS[search.BEST].title})")


@register("search-variants", "Find products like this variant", "§2.4 item 3", "06_search",
          "A JPEG shop photo of a test product, edits of catalogue item 0 and (when shipped) generated products, "
          "searched with the classifier's features; green: the class the classifier predicts for the query.")
def search_variants() -> Figure:
    from prodlab import checkpoints, search

    emb, index = search.catalogue_index(search.BEST)
    variants = search.variant_queries(VARIANT_ITEM, PHOTO_OF)
    x = torch.stack(list(variants.values()))
    predicted = checkpoints.load("classifier").predict(x)
    titles = [f"{name}\n→ {data.CLASS_NAMES[p]}" for name, p in zip(variants, predicted.tolist(), strict=True)]
    return retrieval_figure(emb, index, x, predicted, titles,
                            "Queries that are not catalogue thumbnails: a shop photo, edits of catalogue item "
                            f"{VARIANT_ITEM}, generated products\n→ the class the classifier sees in the query; "
                            "green: result of that class, red: another; number: cosine similarity")


# ---------------------------------------------------------------- notebook 02: GANs (§2.2, §3.1.2, §4.1)


@register("gan-training-curves", "GAN training curves: the two losses and D's outputs", "§3.1.2 steps 5-7", "02_gan",
          "History of the shipped dcgan run (dcgan.json): L_D, L_G, D(x), D(G(z)) averaged over 50-step windows.")
def gan_training_curves() -> Figure:
    from prodlab import checkpoints

    meta = checkpoints.read_meta("dcgan")
    return plots.gan_training_curves(meta["history"], f"Shipped dcgan: {meta['train_steps']:,} steps of the "
                                     "article's recipe (means over 50 steps)")


@register("gan-samples", "Random products from the DCGAN", "§2.2, §3.1.2 step 7", "02_gan",
          "64 samples of the shipped dcgan (EMA generator) with seed 0.")
def gan_samples() -> Figure:
    from prodlab import checkpoints

    images, _ = checkpoints.generate("dcgan", 64, seed=0)
    return plots.image_grid(images, ncols=16, suptitle="64 random products of the shipped dcgan (seed 0)", cell=0.6)


@register("gan-samples-per-class", "Asking for a class: products of the conditional DCGAN", "§2.2, §4.1", "02_gan",
          "10 samples per class of the shipped cdcgan, seed 0 (the same 10 noise vectors in every row).")
def gan_samples_per_class() -> Figure:
    from prodlab import checkpoints

    model = checkpoints.load("cdcgan")
    z = model.noise(10, torch.Generator().manual_seed(0))
    rows = [model.render(z, torch.full((10,), c)) for c in range(len(data.CLASS_NAMES))]
    return plots.labelled_rows(rows, data.CLASS_NAMES,
                               suptitle="cdcgan: one row per requested class, one column per noise vector z")


@register("gan-progress", "Samples across training (fixed noise)", "§3.1.2 step 7", "02_gan",
          "The same 10 noise vectors through the raw dcgan generator at steps 0, 10, 20, 50, ... and the last "
          "(snapshots stored in dcgan.json).")
def gan_progress() -> Figure:
    from prodlab import checkpoints, train

    snapshots = train.decode_snapshots(checkpoints.read_meta("dcgan")["snapshots"])
    return plots.labelled_rows(list(snapshots.values()), [f"step {s:,}" for s in snapshots],
                               suptitle="dcgan: the same noise z during training", cell=0.7)


@register("gan-class-coverage", "Mode-collapse check: which classes the DCGAN makes", "§4.1", "02_gan",
          "Class shares predicted by the ruler classifier for 10,000 dcgan samples (dcgan.json) and the test set.")
def gan_class_coverage() -> Figure:
    from prodlab import checkpoints, metrics

    meta = checkpoints.read_meta("dcgan")["metrics"]
    r = metrics.ruler()
    test = metrics.class_coverage(r.predict(r.reference("test")))
    return plots.class_shares(
        {f"dcgan samples (TV to uniform {meta['coverage_tv']:.3f})": meta["class_share"],
         f"test images (TV {test['coverage_tv']:.3f})": test["class_share"]},
        data.CLASS_NAMES, f"Predicted class of {meta['n']:,} unconditional samples: no class is missing")


@register("gan-ablation", "Ablation: the article's recipe and the improvements", "§3.1.2, §4.1", "02_gan",
          "Measured rows (10,000 samples each) of dcgan.json, cdcgan.json and bench_gan.json; within a block of "
          "equal steps the CPU time is equal.")
def gan_ablation() -> Figure:
    from prodlab import train

    rows = [{**r, "recipe": f"{r['model']}, {r['steps']:,} steps, {r['cpu_minutes']:.1f} CPU-min: {r['recipe']}"}
            for r in train.gan_ablation()]
    return plots.ablation_bars(rows, "GAN recipes measured with the ruler (10,000 samples each)")


@register("gan-time-to-fid", "Time to FID: how fast each recipe gets good", "§3.1.2 step 7", "02_gan",
          "python -m prodlab bench gan: FID of 2,000 samples after every epoch, raw G (dashed) and EMA G (solid).")
def gan_time_to_fid() -> Figure:
    import json

    from prodlab import train

    bench = json.loads(train.BENCH_GAN_FILE.read_text(encoding="utf-8"))
    curves = {}
    for key, v in bench["variants"].items():
        points = [p for p in v["time_to_fid"] if p["epoch"] > 0]
        minutes = [p["cpu_seconds"] / 60 for p in points]
        raw = {"raw G": (minutes, [p["fid_raw"] for p in points])}
        curves[key] = {"EMA G": (minutes, [p["fid_ema"] for p in points]), **raw} if "fid_ema" in points[0] else raw
    return plots.time_to_fid(curves, f"FID of {bench['n_fid']:,} samples after each epoch (bench gan)")


# ---------------------------------------------------------------- notebook 05: editing (§2.4 item 2, §3.3 step 4)

EDIT_SCORE_IMAGES = 200  # test images behind the catalogue's score chart (quick mode: 32); the tables use 1,000
DENOISE_SHOWN = {"gaussian": 0.3, "saltpepper": 0.1}  # the strengths shown in the image grids


def _class_titles(labels: torch.Tensor) -> list[str]:
    return [data.CLASS_NAMES[int(c)] for c in labels]


def enhancement_grid(task: str) -> Figure:
    """The showcase products, their degraded versions and every method's output, one row each."""
    from prodlab import edit

    x, labels = edit.showcase()
    level = DENOISE_SHOWN.get(task, 0.0)
    y, outputs = edit.enhancement_outputs(x, task, level)
    shown = torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest") if task == "superres" else y
    what = {"gaussian": f"Gaussian noise sigma {level}", "saltpepper": f"salt and pepper, {level:.0%} of pixels",
            "superres": "14 x 14 thumbnail (shown enlarged, nearest)"}[task]
    rows = [x, shown] + [v for k, v in outputs.items() if k != "noisy_input"]
    names = ["original", "degraded"] + [k.replace("_", " ") for k in outputs if k != "noisy_input"]
    psnrs = [""] * 2 + [f"  {float(edit.psnr(v, x).mean()):.1f} dB" for k, v in outputs.items() if k != "noisy_input"]
    return plots.labelled_rows(rows, [n + p for n, p in zip(names, psnrs, strict=True)],
                               f"Enhancement: {what}; number: mean PSNR of the row", col_titles=_class_titles(labels),
                               label_width=2.2)


@register("edit-denoise", "Denoising: filters against generative priors", "§2.4 item 2 (增强), §3.3 step 4",
          "05_editing",
          "One test product per class with Gaussian noise (sigma 0.3), restored by filters and by latent optimisation "
          "in the shipped VAE and DCGAN.")
def edit_denoise() -> Figure:
    return enhancement_grid("gaussian")


@register("edit-saltpepper", "Removing salt-and-pepper noise", "§2.4 item 2 (增强), §3.3 step 4", "05_editing",
          "One test product per class with 10% of the pixels set to 0 or 1; median filter against the priors "
          "(started from the median-filtered image).")
def edit_saltpepper() -> Figure:
    return enhancement_grid("saltpepper")


@register("edit-superres", "Super-resolution 14 x 14 -> 28 x 28", "§2.4 item 2 (增强), §3.3 step 4", "05_editing",
          "2 x 2 average-pooled test products, upsampled by bicubic interpolation and by latent optimisation "
          "(the code whose decoding pools to the thumbnail).")
def edit_superres() -> Figure:
    return enhancement_grid("superres")


@register("edit-scores", "Enhancement and restoration scores per method", "§2.4 item 2, §3.3 step 4", "05_editing",
          "Mean PSNR on the first 200 test images (quick 32): denoising (mean over 3 strengths), super-resolution, "
          "inpainting (PSNR of the missing pixels). `python -m prodlab evaluate edit --n 1000` gives the full table.")
def edit_scores(result: dict | None = None) -> Figure:
    from prodlab import edit

    result = result or edit.evaluate_editing(config.budget(EDIT_SCORE_IMAGES, 32))
    tasks = {t: {m: v["psnr"] for m, v in result[t].items()} for t in edit.TASKS}
    return plots.method_scores(tasks, f"Mean PSNR on {result['n']:,} test images (higher is better; red: generative "
                                      "prior, grey: classical; outlined: best)")


def inpainting_grid(kind: str) -> Figure:
    from prodlab import edit

    x, labels = edit.showcase()
    y, m, outputs = edit.inpainting_outputs(x, kind)
    rows = [x, edit.shown_masked(y, m)] + list(outputs.values())
    psnrs = [""] * 2 + [f"  {float(edit.psnr(v, x, m).mean()):.1f} dB" for v in outputs.values()]
    names = ["original", "masked (grey)"] + [k.replace("_", " ") for k in outputs]
    return plots.labelled_rows(rows, [n + p for n, p in zip(names, psnrs, strict=True)],
                               f"Inpainting, mask '{kind}': number: mean PSNR of the missing pixels",
                               col_titles=_class_titles(labels), label_width=2.2)


@register("edit-inpaint-center", "Inpainting a centre box", "§2.4 item 2 (修复), §3.3 step 4", "05_editing",
          "One test product per class with its central 12 x 12 pixels missing, filled by mean fill, diffusion and "
          "latent optimisation on the visible pixels (VAE, DCGAN).")
def edit_inpaint_center() -> Figure:
    return inpainting_grid("center")


@register("edit-inpaint-blocks", "Inpainting random blocks", "§2.4 item 2 (修复), §3.3 step 4", "05_editing",
          "As edit-inpaint-center with four random 7 x 7 blocks missing (seed 0).")
def edit_inpaint_blocks() -> Figure:
    return inpainting_grid("blocks")


@register("edit-inpaint-half", "Inpainting a missing half", "§2.4 item 2 (修复), §3.3 step 4", "05_editing",
          "As edit-inpaint-center with the left (even images) or right half (odd images) missing.")
def edit_inpaint_half() -> Figure:
    return inpainting_grid("half")


INTERPOLATION_PAIRS = 500  # random code pairs behind the norm curves


@register("edit-interpolation", "Interpolating between two products: linear against spherical", "§2.4 item 2 (个性化)",
          "05_editing", "DCGAN codes (seed 3): two pairs decoded along the straight line and the great circle; "
          "below, |z| along both paths averaged over 500 random pairs.")
def edit_interpolation() -> Figure:
    from prodlab import edit

    gan = edit.shipped("dcgan")
    z = gan.noise(4, torch.Generator().manual_seed(3))
    t = torch.linspace(0, 1, 9)
    rows, labels = [], []
    for i, (a, b) in enumerate([(0, 1), (2, 3)]):
        for spherical in (False, True):
            rows.append(gan.render(edit.interpolate(z[a], z[b], len(t), spherical)))
            labels.append(f"pair {i + 1}, {'slerp' if spherical else 'linear'}")
    pairs = gan.noise(2 * INTERPOLATION_PAIRS, torch.Generator().manual_seed(4)).reshape(2, INTERPOLATION_PAIRS, -1)
    norms = {name: torch.stack([edit.interpolate(a, b, 21, spherical).norm(dim=1) for a, b in zip(*pairs, strict=True)])
             .mean(0).numpy() for name, spherical in (("linear", False), ("spherical", True))}
    return plots.interpolation(rows, labels, t.numpy(), norms, gan.cfg.latent_dim ** 0.5,
                               "Interpolation in the DCGAN's 64-d latent space:\nthe straight line cuts through the "
                               "middle, where codes are rare; the great circle stays where they live")


@register("edit-class-transfer", "Class transfer: the same code as every class", "§2.4 item 2 (个性化)", "05_editing",
          "Conditional DCGAN: five codes (seed 5), each drawn with all ten class labels.")
def edit_class_transfer() -> Figure:
    from prodlab import edit

    gan = edit.shipped("cdcgan")
    images = edit.class_transfer(gan, gan.noise(5, torch.Generator().manual_seed(5)))
    return plots.labelled_rows(list(images), [f"code {i + 1}" for i in range(len(images))],
                               "Same z, other class: the code keeps pose, size and brightness, the label changes",
                               col_titles=list(data.CLASS_NAMES))


DIRECTION_SHOWN = {"brightness": (4, 2), "width": (3, 6), "pattern": (0, 8)}  # two classes shown per property


def direction_strips(name: str) -> Figure:
    from prodlab import edit

    rows, labels = [], []
    x, classes = edit.showcase(10)
    for prop, classes in DIRECTION_SHOWN.items():
        for c in classes:
            if name == "vae":
                rows.append(edit.edit_real(x[c], prop))
            else:
                gan = edit.shipped("cdcgan")
                z = gan.noise(1, torch.Generator().manual_seed(c))
                rows.append(edit.walk("cdcgan", z, edit.direction("cdcgan", prop), edit.STEPS,
                                      torch.tensor([c]))[0])
            labels.append(f"{prop}, {data.CLASS_NAMES[c]}")
    what = "real test products, encoded" if name == "vae" else "generated products"
    return plots.labelled_rows(rows, labels, f"Latent directions of the {name.upper()} ({what})\nleft to right: "
                               + ", ".join(v[1] for v in edit.PROPERTIES.values()),
                               col_titles=[f"{t:+.1f}" for t in edit.STEPS.tolist()], label_width=1.8)


@register("edit-directions-vae", "Editing real products along latent directions (VAE)", "§2.4 item 2 (个性化)",
          "05_editing", "Test products encoded by the VAE, moved along the within-class covariance direction of each "
          "property (steps in within-class standard deviations), decoded.")
def edit_directions_vae() -> Figure:
    return direction_strips("vae")


@register("edit-directions-cdcgan", "Latent directions of the conditional GAN", "§2.4 item 2 (个性化)", "05_editing",
          "Conditional DCGAN codes (seeds = class) moved along each property's direction, same class label.")
def edit_directions_cdcgan() -> Figure:
    return direction_strips("cdcgan")


@register("edit-direction-profiles", "Do the directions do what their names say?", "§2.4 item 2 (个性化)", "05_editing",
          "Each property measured along each direction, mean over 200 held-out codes (quick 50; seed 1).")
def edit_direction_profiles(reports: list | None = None) -> Figure:
    from prodlab import edit

    reports = reports or [edit.direction_report(m, p, n=config.budget(200, 50))
                          for m in edit.DIRECTION_MODELS for p in edit.PROPERTIES]
    return plots.property_profiles(reports, "The measured property along each latent direction (legend: share of "
                                   "codes for which it rises at every step)")


@register("edit-inpaint-invented", "Where the prior invents another product", "§2.4 item 2 (修复)", "05_editing",
          "Half-masked test products (first 500; quick 64) whose VAE inpainting the classifier puts in another class "
          "than the original: the first eight.")
def edit_inpaint_invented() -> Figure:
    from prodlab import edit

    x = edit.test_images(config.budget(500, 64))
    y, m, outputs = edit.inpainting_outputs(x, "half")
    restored = outputs["vae_inversion"]
    wrong = torch.nonzero(edit.invented(x, restored)).flatten()[:8]
    r = edit.metrics.ruler()
    before, after = (r.predict(r.features(v[wrong])) for v in (x, restored))
    return plots.labelled_rows(
        [x[wrong], edit.shown_masked(y[wrong], m[wrong]), restored[wrong]],
        ["original", "masked (grey)", "VAE inpainting"],
        f"The prior fills the hole with a plausible product, not always this one: {len(wrong)} of "
        f"{int(edit.invented(x, restored).sum())} changed products\n(of {len(x)}); titles: the classifier's "
        "class before → after", col_titles=[f"{data.CLASS_NAMES[int(a)]}\n→ {data.CLASS_NAMES[int(b)]}"
                                           for a, b in zip(before, after, strict=True)], label_width=1.6)
