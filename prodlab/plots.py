"""Plot helpers. Each takes data, draws one figure and returns it closed.

Closed means pyplot no longer tracks it: a notebook shows it once as the cell's value (an open figure
would show twice), and the figure catalogue saves it. No helper loads data or trains anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

CMAP = "gray"  # Fashion-MNIST polarity: product bright on black
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width, height), layout="constrained")


def _done(fig: Figure) -> Figure:
    plt.close(fig)
    return fig


def _as_numpy(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """N x 28 x 28 or N x 1 x 28 x 28, uint8 or float in [0, 1] -> float N x 28 x 28."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4:
        arr = arr[:, 0]
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)


def image_grid(
    images: torch.Tensor | np.ndarray,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell: float = 1.0,
) -> Figure:
    """A grid of product images (row-major), optionally titled per image."""
    arr = _as_numpy(images)
    nrows = max(1, -(-len(arr) // ncols))
    fig = _figure(ncols * cell, nrows * cell * (1.2 if titles else 1.0) + (0.4 if suptitle else 0.0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i < len(arr):
            _show(ax, arr[i], titles[i] if titles else None)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return _done(fig)


def labelled_rows(
    rows: Sequence[torch.Tensor | np.ndarray], row_labels: Sequence[str], suptitle: str | None = None,
    cell: float = 0.9, col_titles: Sequence[str] | None = None, label_width: float = 1.3,
) -> Figure:
    """One row of images per label (e.g. one row per product class), the label written left of the row;
    ``col_titles`` (optional) above the first row."""
    arrays = [_as_numpy(r) for r in rows]
    ncols = max(len(a) for a in arrays)
    fig = _figure(ncols * cell + label_width,
                  len(arrays) * cell + (0.4 if suptitle else 0.0) + (0.3 if col_titles else 0.0))
    axes = np.atleast_2d(fig.subplots(len(arrays), ncols))
    for r, (arr, label) in enumerate(zip(arrays, row_labels, strict=True)):
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(arr):
                _show(ax, arr[c], col_titles[c] if col_titles and r == 0 else None)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return _done(fig)


def class_balance(counts: Mapping[str, Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Grouped bar chart of images per class, one group per split."""
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        bars = ax.bar(x + (i - (len(counts) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_ylim(0, 1.25 * max(max(v) for v in counts.values()))
    ax.set_title("Images per class")
    ax.legend(frameon=False, ncols=len(counts), loc="upper right")
    return _done(fig)


def bar_chart(values: Sequence[float], labels: Sequence[str], ylabel: str, title: str) -> Figure:
    """One bar per label, its value written on top."""
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    bars = ax.bar(range(len(values)), values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=1)
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.2 * max(values))
    ax.set_title(title)
    return _done(fig)


def augmentation_table(
    originals: torch.Tensor, steps: Mapping[str, torch.Tensor], suptitle: str | None = None
) -> Figure:
    """Rows = transforms (first row the originals), columns = the same products."""
    rows = [originals, *steps.values()]
    return labelled_rows(rows, ["original", *steps.keys()], suptitle=suptitle, cell=1.0)


def pixel_histograms(before: torch.Tensor, after: torch.Tensor, before_label: str, after_label: str) -> Figure:
    """Histograms of pixel values before and after a preprocessing step (§3.3 step 1)."""
    fig = _figure(8, 2.8)
    axes = fig.subplots(1, 2)
    for ax, data, label in zip(axes, (before, after), (before_label, after_label), strict=True):
        ax.hist(data.flatten().numpy(), bins=50, color="#4c72b0", log=True)
        ax.set_title(label)
        ax.set_xlabel("pixel value")
    axes[0].set_ylabel("pixels (log scale)")
    return _done(fig)


# ---- notebook 01: losses (§2.2, §2.3, §4)

LOSS_COLORS = {"saturating": "#c44e52", "non-saturating": "#4c72b0"}  # generator losses, same in every figure


def generator_loss_curves(
    d: np.ndarray, loss: Mapping[str, np.ndarray], grad: Mapping[str, np.ndarray]
) -> Figure:
    """Generator losses and their gradients w.r.t. the discriminator logit, as functions of D(G(z)) (§4 L_G)."""
    fig = _figure(9, 3.4)
    axes = fig.subplots(1, 2)
    formulas = {"saturating": r"$\log(1 - D)$", "non-saturating": r"$-\log D$"}
    for name in loss:
        label = f"{name}: {formulas.get(name, '')}"
        axes[0].plot(d, loss[name], color=LOSS_COLORS.get(name), lw=2, label=label)
        axes[1].plot(d, grad[name], color=LOSS_COLORS.get(name), lw=2, label=label)
    axes[0].set_title("Generator loss of one fake")
    axes[0].set_ylabel("loss that G minimises")
    axes[1].set_title(r"Gradient w.r.t. the logit $\ell$ ($D = \sigma(\ell)$)")
    axes[1].set_ylabel(r"$\partial\,\mathrm{loss} / \partial \ell$")
    for ax in axes:
        ax.set_xlabel(r"$D(G(z))$: the discriminator's belief that the fake is real")
        ax.axvspan(0.0, 0.1, color="0.9", zorder=0)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlim(0, 1)
    axes[1].text(0.012, -0.5, "D rejects\nthe fakes", fontsize=8, va="center")
    axes[1].legend(frameon=False, loc="upper center")
    return _done(fig)


def optimal_discriminator(
    x: np.ndarray, p_data: np.ndarray, p_gen: np.ndarray, d_trained: np.ndarray, d_star: np.ndarray,
    bulk: np.ndarray,
) -> Figure:
    """Top: the two densities. Bottom: the trained discriminator against ``D* = p_data / (p_data + p_g)``."""
    fig = _figure(7, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))
    top.plot(x, p_data, color="#55a868", lw=2, label=r"$p_\mathrm{data}$")
    top.plot(x, p_gen, color="#c44e52", lw=2, label=r"$p_g$")
    top.set_ylabel("density")
    top.set_title("Two known distributions and the discriminator trained with the article's $L_D$")
    top.legend(frameon=False)
    bottom.plot(x, d_star, color="black", lw=2, ls="--", label=r"$D^* = p_\mathrm{data} / (p_\mathrm{data} + p_g)$")
    bottom.plot(x, d_trained, color="#4c72b0", lw=2, alpha=0.8, label="trained MLP: $\\sigma(\\ell(x))$")
    gap = np.abs(d_trained - d_star)[bulk].max()
    lo, hi = x[bulk][0], x[bulk][-1]
    for ax in (top, bottom):
        ax.axvspan(x[0], lo, color="0.92", zorder=0)
        ax.axvspan(hi, x[-1], color="0.92", zorder=0)
    bottom.set_xlim(x[0], x[-1])
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("x")
    bottom.set_ylabel("D(x)")
    bottom.set_title(f"Max |D - D*| on the central mass (white band): {gap:.3f}; grey: tails")
    bottom.legend(frameon=False, loc="lower left")
    return _done(fig)


def jsd_identity(shifts: np.ndarray, v_star: np.ndarray, jsd: np.ndarray) -> Figure:
    """``V(D*, G)`` by quadrature against ``2 JSD - log 4`` from a separate JSD computation (§2.2)."""
    fig = _figure(9, 3.3)
    left, right = fig.subplots(1, 2)
    left.plot(shifts, 2 * jsd - np.log(4), color="#4c72b0", lw=2, label=r"$2\,\mathrm{JSD} - \log 4$ (SciPy)")
    left.plot(shifts, v_star, "o", color="black", ms=5, label=r"$V(D^*, G)$ by quadrature")
    left.axhline(-np.log(4), color="0.5", ls=":", lw=1)
    left.axhline(0.0, color="0.5", ls=":", lw=1)
    left.text(shifts[-1], -np.log(4) + 0.04, r"$-\log 4$: $p_g = p_\mathrm{data}$", ha="right", fontsize=8)
    left.text(shifts[0], -0.08, "0: the distributions barely overlap", ha="left", fontsize=8)
    left.set_xlabel(r"shift $\mu$ of $p_g = N(\mu, 1)$ from $p_\mathrm{data} = N(0, 1)$")
    left.set_ylabel("value")
    left.set_title("The value of the game at the optimal discriminator")
    left.legend(frameon=False, loc="center right")
    right.semilogy(shifts, np.maximum(np.abs(v_star - (2 * jsd - np.log(4))), 1e-17), "o-", color="black")
    right.set_xlabel(r"shift $\mu$")
    right.set_ylabel(r"$|V(D^*, G) - (2\,\mathrm{JSD} - \log 4)|$")
    right.set_title("Difference (an exact 0 is drawn at 1e-17)")
    return _done(fig)


def generator_gradient_norms(
    d_steps: np.ndarray, d_fake: np.ndarray, grad_norm: Mapping[str, np.ndarray]
) -> Figure:
    """As D learns to reject an untrained G, the saturating loss stops sending gradient to G (§4 L_G)."""
    fig = _figure(9, 3.2)
    left, right = fig.subplots(1, 2)
    left.semilogy(d_steps, d_fake, color="black", lw=2)
    left.set_xlabel("discriminator-only training steps")
    left.set_ylabel(r"mean $D(G(z))$")
    left.set_title("D learns to reject the fakes")
    for name, norm in grad_norm.items():
        right.semilogy(d_steps, norm, "o-", ms=3, color=LOSS_COLORS.get(name), lw=2, label=name)
    right.set_xlabel("discriminator-only training steps")
    right.set_ylabel(r"$\|\nabla_\theta L_G\|$ (generator weights)")
    right.set_title("Gradient each generator loss sends to G")
    right.legend(frameon=False)
    return _done(fig)


def toy_gan_samples(
    modes: np.ndarray, samples: Mapping[str, Sequence[np.ndarray]], covered: Mapping[str, Sequence[int]],
    quality: Mapping[str, Sequence[float]], seeds: Sequence[int], near: float,
) -> Figure:
    """Rows = generator losses, columns = seeds: generated points, the real modes marked, coverage in the title."""
    nrows, ncols = len(samples), max(len(s) for s in samples.values())
    fig = _figure(2.6 * ncols + 0.6, 2.6 * nrows + 0.4)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, sharex=True, sharey=True))
    lim = 1.35 * np.abs(modes).max()
    for r, (name, runs) in enumerate(samples.items()):
        for c, points in enumerate(runs):
            ax = axes[r, c]
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.3, color=LOSS_COLORS.get(name), rasterized=True)
            for centre in modes:
                ax.add_patch(plt.Circle(centre, near, fill=False, color="black", lw=0.8, ls="--"))
            ax.plot(modes[:, 0], modes[:, 1], "x", color="black", ms=6, mew=1.5)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"seed {seeds[c]}: {covered[name][c]}/{len(modes)} modes, {quality[name][c]:.0%} near one",
                         fontsize=9)
        axes[r, 0].set_ylabel(f"{name} $L_G$")
    fig.suptitle("Toy GAN on a ring of 8 Gaussians (x: real modes, dashed: hit radius)")
    return _done(fig)


def mc_convergence(sizes: np.ndarray, estimate: np.ndarray, stderr: np.ndarray, exact: float) -> Figure:
    """Monte-Carlo estimates with a band of two standard errors, converging to the closed form (§2.3)."""
    fig = _figure(6.5, 3.4)
    ax = fig.subplots()
    ax.fill_between(sizes, estimate - 2 * stderr, estimate + 2 * stderr, color="#4c72b0", alpha=0.25,
                    label="±2 standard errors")
    ax.plot(sizes, estimate, "o-", color="#4c72b0", lw=2, label="Monte-Carlo estimate")
    ax.axhline(exact, color="black", ls="--", lw=1.5, label=f"closed form = {exact:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("samples z ~ q(z|x)")
    ax.set_ylabel("KL(q || p(z)) (nats)")
    ax.set_title("Closed-form Gaussian KL against its Monte-Carlo estimate")
    ax.legend(frameon=False, fontsize=8)
    return _done(fig)


def gradient_variance(
    sizes: np.ndarray, var: Mapping[str, np.ndarray], var_theory: Mapping[str, np.ndarray]
) -> Figure:
    """Variance of two unbiased gradient estimators against the number of samples, log-log (§3.2.2)."""
    colors = {"reparameterisation": "#55a868", "REINFORCE": "#8172b2"}
    fig = _figure(6.5, 3.6)
    ax = fig.subplots()
    for name, values in var.items():
        ax.loglog(sizes, values, "o", ms=6, color=colors.get(name), label=f"{name} (measured)")
        ax.loglog(sizes, var_theory[name], "--", lw=1.5, color=colors.get(name), label=f"{name} (theory)")
    ax.set_xlabel("samples per gradient estimate")
    ax.set_ylabel("variance of the estimate")
    ax.set_title(r"Estimating $\partial_\mu\,\mathbb{E}_{z \sim N(\mu, \sigma^2)}[z^2]$")
    ax.legend(frameon=False, fontsize=8)
    return _done(fig)


# ---- notebook 03: VAEs (§2.3, §3.2)


def vae_history(history: Sequence[Mapping[str, float]], title: str = "VAE training") -> Figure:
    """Per-epoch reconstruction term, KL term and test negative ELBO of a VAE training run (§3.2.2 step 8)."""
    fig = _figure(9, 3.0)
    axes = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    axes[0].plot(epochs, [h["recon"] for h in history], "o-", label="reconstruction (train)")
    axes[0].plot(epochs, [h["test_neg_elbo_bernoulli"] for h in history], "s--", label="-ELBO (test, Bernoulli)")
    axes[0].set_ylabel("nats per image")
    axes[0].legend(frameon=False, fontsize=8)
    axes[1].plot(epochs, [h["kl"] for h in history], "o-", color="#c44e52")
    axes[1].set_ylabel("KL(q(z|x) || p(z)), nats")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    return _done(fig)


def latent_manifold(tiles: torch.Tensor | np.ndarray, coords: np.ndarray, title: str) -> Figure:
    """Images decoded on a square grid of 2-D latent points (row-major, top row = largest z2) as one mosaic."""
    arr = _as_numpy(tiles)
    n = len(coords)
    mosaic = arr.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(n * 28, n * 28)
    fig = _figure(7.2, 7.4)
    ax = fig.subplots()
    ax.imshow(mosaic, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest",
              extent=(-0.5, n - 0.5, -0.5, n - 0.5))
    ticks = np.arange(0, n, max(1, n // 5))
    ax.set_xticks(ticks, [f"{coords[i]:.1f}" for i in ticks])
    ax.set_yticks(ticks, [f"{coords[i]:.1f}" for i in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return _done(fig)


def latent_scatter(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Points in a 2-D latent space, coloured by product class, with a legend."""
    fig = _figure(7.2, 5.6)
    ax = fig.subplots()
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        pts = z[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color=cmap(c), label=name, rasterized=True)
    ax.set_xlabel("$\\mu_1(x)$")
    ax.set_ylabel("$\\mu_2(x)$")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, markerscale=4, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _done(fig)


def beta_sweep(
    rows: Sequence[Mapping[str, float]], recons: Sequence[torch.Tensor], samples: Sequence[torch.Tensor],
    originals: torch.Tensor,
) -> Figure:
    """Left: rate (KL) against distortion per beta; right: reconstructions and samples of each beta's model."""
    fig = _figure(12, 0.9 * (len(rows) + 1) + 0.6)
    left, right = fig.subfigures(1, 2, width_ratios=(1, 1.6))
    ax = left.subplots()
    rate, dist = [r["rate"] for r in rows], [r["distortion"] for r in rows]
    ax.plot(rate, dist, "o-", color="#4c72b0")
    for r in rows:
        ax.annotate(f"β = {r['beta']:g}", (r["rate"], r["distortion"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion D = -E log p(x|z), nats")
    ax.set_title("Rate against distortion (test images)")
    k = len(originals)
    grid = right.subplots(len(rows) + 1, 2 * k + 1, width_ratios=[1] * k + [0.3] + [1] * k)
    cells = [(originals, None), *zip(recons, samples, strict=True)]
    for r, (left_images, right_images) in enumerate(cells):
        for c, ax in enumerate(grid[r]):
            block, i = (left_images, c) if c < k else (right_images, c - k - 1)
            if block is not None and 0 <= i < len(block):
                _show(ax, _as_numpy(block[i : i + 1])[0])
            else:
                ax.axis("off")
        label = "test image" if r == 0 else f"β = {rows[r - 1]['beta']:g}"
        grid[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    right.suptitle("reconstructions of the test images (left) and random samples (right)", fontsize=10)
    return _done(fig)


def kl_per_dimension(kl: Mapping[str, np.ndarray], threshold: float) -> Figure:
    """Average KL of each latent dimension (sorted), one panel per model, with the 'active' threshold."""
    fig = _figure(4.5 * len(kl), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(kl)))
    for ax, (name, values) in zip(axes, kl.items(), strict=True):
        v = np.sort(np.asarray(values))[::-1]
        active = int((v >= threshold).sum())
        ax.bar(range(len(v)), np.maximum(v, 1e-4), color=np.where(v >= threshold, "#4c72b0", "#c44e52"))
        ax.axhline(threshold, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("latent dimension (sorted)")
        ax.set_title(f"{name}: {active} of {len(v)} active", fontsize=9)
    axes[0].set_ylabel(f"KL per dimension, nats (dashed: {threshold})")
    return _done(fig)


# ---- notebook 04: evaluation (the classifier as a ruler, and checks of the metrics)


def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Figure:
    """Row-normalised confusion matrix (true class in rows), each cell annotated with its percentage."""
    counts = np.asarray(confusion, dtype=np.float64)
    share = counts / counts.sum(1, keepdims=True)
    fig = _figure(6.4, 5.6)
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(share)):
        for j in range(len(share)):
            if counts[i, j]:
                text = f"{100 * share[i, j]:.0f}" if share[i, j] >= 0.005 else "·"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=40, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return _done(fig)


def metric_curves(
    sweeps: Mapping[str, Sequence[Mapping[str, float]]],
    metrics: Mapping[str, str],
    xlabels: Mapping[str, str],
    log_x: Sequence[str] = (),
    reversed_x: Sequence[str] = (),
    suptitle: str | None = None,
    unit_interval: Sequence[str] = ("precision", "recall"),
) -> Figure:
    """One row per sweep (e.g. a degradation), one column per metric: metric value against the sweep's level.

    ``sweeps[name]`` is a list of rows with a ``level`` and the metric keys; ``metrics`` maps key -> axis label.
    Metrics in ``unit_interval`` get the full 0..1 axis, so that a change of 0.01 does not look like a collapse.
    """
    fig = _figure(2.6 * len(metrics) + 0.4, 2.1 * len(sweeps) + (0.4 if suptitle else 0.0))
    axes = np.atleast_2d(fig.subplots(len(sweeps), len(metrics)))
    for r, (name, rows) in enumerate(sweeps.items()):
        levels = [row["level"] for row in rows]
        for c, (key, label) in enumerate(metrics.items()):
            ax = axes[r, c]
            ax.plot(levels, [row[key] for row in rows], "o-", color=f"C{c}", ms=4)
            if key in unit_interval:
                ax.set_ylim(-0.02, 1.02)
            if name in log_x:
                ax.set_xscale("log")
            if name in reversed_x:
                ax.invert_xaxis()
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(label)
            ax.set_xlabel(xlabels.get(name, "level"), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return _done(fig)


def floor_plot(rows: Sequence[Mapping[str, float]], title: str) -> Figure:
    """FID and KID of real-vs-real comparisons against sample size: mean and spread over independent draws."""
    sizes = sorted({int(row["n"]) for row in rows})
    fig = _figure(8.5, 3.0)
    axes = fig.subplots(1, 2)
    labels = ("FID (lower is better)", "KID (lower is better; 0 = same distribution)")
    for ax, key, label in zip(axes, ("fid", "kid"), labels, strict=True):
        values = [np.array([row[key] for row in rows if row["n"] == n]) for n in sizes]
        mean = np.array([v.mean() for v in values])
        std = np.array([v.std() for v in values])
        for n, v in zip(sizes, values, strict=True):
            ax.plot([n] * len(v), v, ".", color="0.6", ms=4)
        ax.errorbar(sizes, mean, yerr=std, fmt="o-", color="C0", capsize=3, ms=4, label="mean ± std over draws")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("samples N (train images vs the 10,000 test images)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    limit = max(0.005, 1.5 * max(abs(row["kid"]) for row in rows))  # symmetric, so "about 0" reads as such
    axes[1].set_ylim(-limit, limit)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    return _done(fig)


def class_shares(shares: Mapping[str, Sequence[float]], class_names: Sequence[str], title: str) -> Figure:
    """Grouped bars: share of samples predicted as each class, one group per sample set; dashed line = uniform."""
    fig = _figure(8.5, 3.2)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    width = 0.8 / len(shares)
    for i, (name, values) in enumerate(shares.items()):
        ax.bar(x + (i - (len(shares) - 1) / 2) * width, values, width, label=name)
    ax.axhline(1.0 / len(class_names), color="black", ls="--", lw=1, label="uniform (10 %)")
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel("share of samples")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return _done(fig)


# ---- notebook 06: product search (§2.4 item 3)

HIT, MISS = "#55a868", "#c44e52"  # result of the query's class / of another class


def retrieval_rows(
    queries: torch.Tensor | np.ndarray, query_titles: Sequence[str], results: Sequence[torch.Tensor | np.ndarray],
    result_titles: Sequence[Sequence[str]], hits: Sequence[Sequence[bool]] | None, suptitle: str,
    cell: float = 0.95,
) -> Figure:
    """One row per query: the query, a gap, then its results best first, framed green (hit) or red (miss).

    ``hits`` None (the query's class is unknown): no frames.
    """
    q = _as_numpy(queries)
    rows = [_as_numpy(r) for r in results]
    k = max(len(r) for r in rows)
    fig = _figure((k + 1.3) * cell, len(q) * cell * 1.32 + 0.35)
    axes = np.atleast_2d(fig.subplots(len(q), k + 2, width_ratios=[1, 0.3] + [1] * k))
    for r in range(len(q)):
        _show(axes[r, 0], q[r], query_titles[r])
        axes[r, 1].axis("off")
        for c in range(k):
            ax = axes[r, c + 2]
            _show(ax, rows[r][c], result_titles[r][c])
            for spine in ax.spines.values() if hits is not None else ():
                spine.set_visible(True)
                spine.set_color(HIT if hits[r][c] else MISS)
                spine.set_linewidth(2.5)
    fig.suptitle(suptitle)
    return _done(fig)


def precision_curves(curves: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Mean precision@k against k (log scale), one line per embedding, P@10 in the legend."""
    fig = _figure(7.5, 3.8)
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
    return _done(fig)


def tsne_map(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """A t-SNE map coloured by class: ``latent_scatter`` with axes that say they carry no units."""
    fig = latent_scatter(points, labels, class_names, title)
    ax = fig.axes[0]
    ax.set_xlabel("t-SNE 1 (no units: only neighbourhoods mean something)")
    ax.set_ylabel("t-SNE 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


# ---- notebook 02: GANs (§2.2, §3.1.2, §4.1)

GAN_COLORS = {"L_D": "#c44e52", "L_G": "#4c72b0", "D(x)": "#55a868", "D(G(z))": "#8172b2"}


def gan_training_curves(history: Sequence[Mapping[str, float]], title: str, smooth: int = 1) -> Figure:
    """Left: L_D and L_G per step; right: mean D(x) and D(G(z)) per step (§3.1.2 step 7: monitor).

    ``smooth > 1`` draws the raw values faintly and their running mean over ``smooth`` steps on top.
    """
    step = np.array([h["step"] for h in history])
    series = {"L_D": "loss_d", "L_G": "loss_g", "D(x)": "d_real", "D(G(z))": "d_fake"}
    fig = _figure(9, 3.2)
    left, right = fig.subplots(1, 2)
    for label, key in series.items():
        ax = left if label.startswith("L_") else right
        values = np.array([h[key] for h in history])
        if smooth > 1 and len(values) > smooth:
            ax.plot(step, values, color=GAN_COLORS[label], lw=0.5, alpha=0.3)
            values = np.convolve(values, np.ones(smooth) / smooth, mode="same")
            values[: smooth // 2], values[-(smooth // 2) :] = np.nan, np.nan  # edges average fewer steps
        ax.plot(step, values, color=GAN_COLORS[label], lw=1.8, label=label)
    left.set_ylabel("loss")
    left.set_title("Losses (each player minimises its own)")
    right.axhline(0.5, color="0.6", lw=0.8, ls=":")
    right.set_ylim(0, 1)
    right.set_ylabel("mean discriminator output")
    right.set_title("D(x) on real, D(G(z)) on fake products")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    return _done(fig)


def time_to_fid(curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]], title: str) -> Figure:
    """FID (log scale) against training CPU minutes: one colour per recipe, one line style per generator of it."""
    fig = _figure(7.5, 3.6)
    ax = fig.subplots()
    for i, (recipe, lines) in enumerate(curves.items()):
        for j, (kind, (minutes, fid)) in enumerate(lines.items()):
            ax.plot(minutes, fid, marker="o", lw=1.8, ms=4, color=f"C{i}", ls=("-", "--", ":")[j],
                    label=f"{recipe}: {kind}")
    ax.set_yscale("log")
    ax.set_xlabel("training CPU minutes (process time)")
    ax.set_ylabel("FID (ruler features; lower is better)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return _done(fig)


def ablation_bars(rows: Sequence[Mapping[str, float | str]], title: str) -> Figure:
    """One horizontal bar per recipe: FID (left, lower is better), precision and recall (right, higher is better)."""
    labels = [r["recipe"] for r in rows]
    y = np.arange(len(rows))[::-1]
    fig = _figure(11, 0.45 * len(rows) + 1.4)
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=(1.2, 1))
    bars = left.barh(y, [r["fid"] for r in rows], color="#4c72b0")
    left.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    left.set_yticks(y, labels, fontsize=8)
    left.set_xlabel("FID (lower is better)")
    left.set_xlim(0, 1.18 * max(r["fid"] for r in rows))
    height = 0.38
    for offset, key, color in ((height / 2, "precision", "#55a868"), (-height / 2, "recall", "#c44e52")):
        b = right.barh(y + offset, [r[key] for r in rows], height, color=color, label=key)
        right.bar_label(b, fmt="%.2f", fontsize=7, padding=2)
    right.set_xlim(0, 1.12)
    right.set_xlabel("precision, recall\n(higher is better)")
    right.legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title)
    return _done(fig)


# ---------------------------------------------------------------- notebook 05: editing (§2.4 item 2, §3.3 step 4)

LEARNED = "#c44e52"  # methods with a generative prior
CLASSICAL = "#8c8c8c"  # filters, interpolation, fills


def method_scores(scores: Mapping[str, Mapping[str, float]], title: str, metric: str = "psnr",
                  learned: Sequence[str] = ("vae_inversion", "gan_inversion", "vae_encode_decode")) -> Figure:
    """One panel per task: a horizontal bar per method (learned priors red, classical grey), the value written at the
    bar's end, the best method's bar outlined. ``scores``: task -> method -> value of ``metric``."""
    fig = _figure(3.0 * len(scores), 0.35 * max(len(m) for m in scores.values()) + 1.3)
    axes = np.atleast_1d(fig.subplots(1, len(scores)))
    for ax, (task, methods) in zip(axes, scores.items(), strict=True):
        names, values = list(methods), [methods[m] for m in methods]
        bars = ax.barh(range(len(names)), values, color=[LEARNED if n in learned else CLASSICAL for n in names])
        bars[int(np.argmax(values))].set_edgecolor("black")
        bars[int(np.argmax(values))].set_linewidth(1.5)
        ax.bar_label(bars, fmt="%.1f" if metric == "psnr" else "%.2f", fontsize=7, padding=2)
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(values) * 0.9 if metric == "psnr" else 0, max(values) * 1.12)
        ax.set_title(task.replace("_", " "))
        ax.set_xlabel("PSNR (dB)" if metric == "psnr" else metric.upper())
    fig.suptitle(title)
    return _done(fig)


def interpolation(rows: Sequence[torch.Tensor], labels: Sequence[str], t: np.ndarray,
                  norms: Mapping[str, np.ndarray], typical_norm: float, title: str) -> Figure:
    """Interpolation strips (one row per path) above the norm of the latent code along each path."""
    fig = _figure(0.8 * len(t) + 1.6, 0.8 * len(rows) + 2.8)
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.8 * len(rows) + 0.3, 2.2])
    axes = np.atleast_2d(top.subplots(len(rows), len(t)))
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        arr = _as_numpy(row)
        for c in range(len(t)):
            _show(axes[r, c], arr[c], f"t={t[c]:.2f}" if r == 0 else None)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    ax = bottom.subplots()
    for label, values in norms.items():
        ax.plot(np.linspace(0, 1, len(values)), values, label=label)
    ax.axhline(typical_norm, color="black", lw=0.8, ls=":", label=f"typical |z| = sqrt(d) = {typical_norm:.1f}")
    ax.set_xlabel("t (0: first product, 1: second)")
    ax.set_ylabel("|z| (mean over pairs)")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.suptitle(title)
    return _done(fig)


def property_profiles(reports: Sequence[Mapping], title: str) -> Figure:
    """The measured property (mean over held-out codes) at each step along each latent direction, one panel per
    property, one line per model; the legend gives the share of codes whose property is monotone."""
    props = list(dict.fromkeys(r["property"] for r in reports))
    fig = _figure(3.2 * len(props), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(props)))
    for ax, prop in zip(axes, props, strict=True):
        mine = [r for r in reports if r["property"] == prop]
        for r in mine:
            ax.plot(r["steps"], r["mean"], marker="o", ms=3, label=f"{r['model']}: monotone {r['share_monotone']:.0%}")
        ax.set_title(f"{prop}: {mine[0]['label']}")
        ax.set_xlabel("step along the direction (within-class s.d.)")
        ax.set_ylabel(prop)
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    return _done(fig)
