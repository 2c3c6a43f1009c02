"""The losses (chapter 01, §2.2, §2.3, §3.1.2, §4):
the figures of notebooks/01_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from prodlab import toy
from prodlab.figures import register
from prodlab.plotting import finish, new_figure

LOSS_COLORS = {"saturating": "#c44e52", "non-saturating": "#4c72b0"}  # generator losses, same in every figure


def generator_loss_curves(
    d: np.ndarray, loss: Mapping[str, np.ndarray], grad: Mapping[str, np.ndarray]
) -> Figure:
    """Generator losses and their gradients w.r.t. the discriminator logit, as functions of D(G(z)) (§4 L_G)."""
    fig = new_figure(9, 3.4)
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
    return finish(fig)


def optimal_discriminator(
    x: np.ndarray, p_data: np.ndarray, p_gen: np.ndarray, d_trained: np.ndarray, d_star: np.ndarray,
    bulk: np.ndarray,
) -> Figure:
    """Top: the two densities. Bottom: the trained discriminator against ``D* = p_data / (p_data + p_g)``."""
    fig = new_figure(7, 4.6)
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
    return finish(fig)


def jsd_identity(shifts: np.ndarray, v_star: np.ndarray, jsd: np.ndarray) -> Figure:
    """``V(D*, G)`` by quadrature against ``2 JSD - log 4`` from a separate JSD computation (§2.2)."""
    fig = new_figure(9, 3.3)
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
    return finish(fig)


def generator_gradient_norms(
    d_steps: np.ndarray, d_fake: np.ndarray, grad_norm: Mapping[str, np.ndarray]
) -> Figure:
    """As D learns to reject an untrained G, the saturating loss stops sending gradient to G (§4 L_G)."""
    fig = new_figure(9, 3.2)
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
    return finish(fig)


def toy_gan_samples(
    modes: np.ndarray, samples: Mapping[str, Sequence[np.ndarray]], covered: Mapping[str, Sequence[int]],
    quality: Mapping[str, Sequence[float]], seeds: Sequence[int], near: float,
) -> Figure:
    """Rows = generator losses, columns = seeds: generated points, the real modes marked, coverage in the title."""
    nrows, ncols = len(samples), max(len(s) for s in samples.values())
    fig = new_figure(2.6 * ncols + 0.6, 2.6 * nrows + 0.4)
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
    return finish(fig)


def mc_convergence(sizes: np.ndarray, estimate: np.ndarray, stderr: np.ndarray, exact: float) -> Figure:
    """Monte-Carlo estimates with a band of two standard errors, converging to the closed form (§2.3)."""
    fig = new_figure(6.5, 3.4)
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
    return finish(fig)


def gradient_variance(
    sizes: np.ndarray, var: Mapping[str, np.ndarray], var_theory: Mapping[str, np.ndarray]
) -> Figure:
    """Variance of two unbiased gradient estimators against the number of samples, log-log (§3.2.2)."""
    colors = {"reparameterisation": "#55a868", "REINFORCE": "#8172b2"}
    fig = new_figure(6.5, 3.6)
    ax = fig.subplots()
    for name, values in var.items():
        ax.loglog(sizes, values, "o", ms=6, color=colors.get(name), label=f"{name} (measured)")
        ax.loglog(sizes, var_theory[name], "--", lw=1.5, color=colors.get(name), label=f"{name} (theory)")
    ax.set_xlabel("samples per gradient estimate")
    ax.set_ylabel("variance of the estimate")
    ax.set_title(r"Estimating $\partial_\mu\,\mathbb{E}_{z \sim N(\mu, \sigma^2)}[z^2]$")
    ax.legend(frameon=False, fontsize=8)
    return finish(fig)






@register("losses-generator-curves", "Saturating vs non-saturating generator loss", "§2.2, §4 L_G", "01_losses",
          "Both generator losses of one fake and their autograd derivatives w.r.t. the logit, over D(G(z)).")
def losses_generator_curves() -> Figure:
    return generator_loss_curves(*toy.generator_loss_profiles())


@register("losses-generator-gradients", "Generator gradient while D learns to reject the fakes", "§4 L_G",
          "01_losses", "Toy-ring MLPs, seed 0: D trained alone for 300 steps; G's weight-gradient norm per loss.")
def losses_generator_gradients() -> Figure:
    return generator_gradient_norms(*toy.generator_gradient_norms())


@register("losses-optimal-discriminator", "Trained discriminator vs the optimal D*", "§2.2", "01_losses",
          "An MLP trained with L_D on N(0,1) vs N(2,0.5^2) (seed 0), against p_data / (p_data + p_g).")
def losses_optimal_discriminator() -> Figure:
    r = toy.train_1d_discriminator()
    return optimal_discriminator(r.x, r.p_data, r.p_gen, r.d_trained, r.d_star, r.bulk)


@register("losses-jsd-identity", "V(D*, G) = 2 JSD - log 4", "§2.2", "01_losses",
          "V(D*, G) by adaptive quadrature and the JSD by SciPy's jensenshannon on a grid, for shifted Gaussians.")
def losses_jsd_identity() -> Figure:
    return jsd_identity(*toy.jsd_identity(toy.JSD_SHIFTS))


@register("losses-toy-gan", "Toy GAN on a ring: mode coverage per generator loss", "§3.1.2, §4", "01_losses",
          "MLP GAN on 8 Gaussians, both generator losses, seeds 0-2; 2,000 generated points per run.")
def losses_toy_gan() -> Figure:
    cfg = toy.ToyGANConfig()
    runs = toy.toy_gan_runs(toy.TOY_SEEDS, cfg)
    return toy_gan_samples(
        toy.ring_modes(cfg), {k: [r.samples for r in v] for k, v in runs.items()},
        {k: [r.covered for r in v] for k, v in runs.items()}, {k: [r.quality for r in v] for k, v in runs.items()},
        toy.TOY_SEEDS, cfg.near,
    )


@register("losses-kl-monte-carlo", "Closed-form KL vs Monte Carlo", "§2.3, §4", "01_losses",
          "KL(q || N(0, I)) of an 8-dim diagonal Gaussian: closed form vs fresh Monte-Carlo samples (seed 0).")
def losses_kl_monte_carlo() -> Figure:
    return mc_convergence(*toy.kl_monte_carlo(*toy.kl_example(), toy.KL_SIZES))


@register("losses-gradient-variance", "Reparameterisation vs REINFORCE gradient variance", "§2.3, §3.2.2",
          "01_losses", "d/dmu E[z^2], z ~ N(2, 1): variance over 4,000 repeats per sample count, with theory.")
def losses_gradient_variance() -> Figure:
    g = toy.gradient_variance()
    return gradient_variance(g.sizes, g.var, g.var_theory)


