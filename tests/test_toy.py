"""Fast checks of prodlab.toy and prodlab.toy_vae: the experiments of notebook 01 on small budgets (seconds)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from prodlab import config, losses, toy, toy_vae


def test_loss_profiles_have_the_closed_form_gradients():
    p = toy.generator_loss_profiles(num=41)
    np.testing.assert_allclose(p.grad["non-saturating"], p.d - 1, atol=1e-12)
    np.testing.assert_allclose(p.grad["saturating"], -p.d, atol=1e-12)
    np.testing.assert_allclose(p.loss["non-saturating"], -np.log(p.d), rtol=1e-9)


def test_value_at_optimum_and_jsd():
    assert toy.value_at_optimum(0, 1, 0, 1) == pytest.approx(-math.log(4), abs=1e-9)
    assert toy.jsd_on_grid(0, 1, 0, 1) == pytest.approx(0.0, abs=1e-12)
    assert toy.jsd_on_grid(0, 1, 40, 1) == pytest.approx(math.log(2), abs=1e-6)  # JSD <= log 2, reached apart
    for shift, std in [(1.5, 1.0), (2.0, 0.5)]:
        v, jsd = toy.value_at_optimum(0, 1, shift, std), toy.jsd_on_grid(0, 1, shift, std)
        assert v == pytest.approx(2 * jsd - math.log(4), abs=1e-6)
        assert v != pytest.approx(jsd - math.log(4), abs=1e-2)  # the factor 2 matters


def test_elbo_plus_gap_is_the_evidence():
    for q_mean, q_std in [(0.0, 1.0), (1.0, 0.3), (-0.5, 2.0)]:
        r = toy_vae.linear_gaussian_elbo(1.2, q_mean, q_std)
        assert r.elbo + r.kl_posterior == pytest.approx(r.log_px, abs=1e-10)
        assert r.kl_posterior > 0 and r.elbo < r.log_px
    exact = toy_vae.linear_gaussian_elbo(1.2, *toy_vae.linear_gaussian_posterior(1.2))
    assert exact.kl_posterior == pytest.approx(0.0, abs=1e-12)
    assert exact.elbo == pytest.approx(exact.log_px, abs=1e-10)


def test_kl_monte_carlo_agrees_with_closed_form():
    mu, logvar = toy_vae.kl_example()
    r = toy_vae.kl_monte_carlo(mu, logvar, [200_000])
    assert r.exact == pytest.approx(losses.gaussian_kl(mu[None], logvar[None]).item())
    assert abs(r.estimate[0] - r.exact) < 4 * r.stderr[0]
    assert r.stderr[0] < 0.01 * r.exact


def test_gradient_estimators_unbiased_and_variances_match_theory():
    g = toy_vae.gradient_variance(toy_vae.GradVarConfig(sizes=(1, 16), repeats=4000))
    for name in g.mean:
        assert (np.abs(g.mean[name] - g.true_grad) < 5 * np.sqrt(g.var_theory[name] / 4000)).all()
        np.testing.assert_allclose(g.var[name], g.var_theory[name], rtol=0.25)
    assert (g.var["REINFORCE"] > 10 * g.var["reparameterisation"]).all()


def test_mode_coverage_counts_real_and_collapsed_samples():
    cfg = toy.ToyGANConfig()
    real = toy.sample_ring(cfg, 4000, torch.Generator().manual_seed(0)).numpy()
    counts, covered, quality = toy.mode_coverage(real, cfg)
    assert covered == 8 and quality == 1.0 and counts.sum() == 4000
    one_mode = toy.ring_modes(cfg)[3] + 0.01 * np.random.default_rng(0).standard_normal((500, 2))
    counts, covered, _ = toy.mode_coverage(one_mode, cfg)
    assert covered == 1 and counts[3] == 500


def test_short_1d_discriminator_approaches_d_star():
    r = toy.train_1d_discriminator(toy.OneDConfig(steps=400))
    assert np.abs(r.d_trained - r.d_star)[r.bulk].max() < 0.15
    assert r.v_trained <= r.v_star + 1e-9  # D* maximises V pointwise


def test_toy_gan_is_seeded_and_shaped():
    cfg = toy.ToyGANConfig(steps=30, n_eval=100)
    a, b = toy.train_toy_gan("non-saturating", cfg), toy.train_toy_gan("non-saturating", cfg)
    assert a.samples.shape == (100, 2) and a.modes.shape == (8, 2)
    np.testing.assert_array_equal(a.samples, b.samples)
    with pytest.raises(KeyError, match="ramp"):
        toy.train_toy_gan("ramp", cfg)


def test_toy_gan_runs_train_independent_members():
    cfg = toy.ToyGANConfig(steps=5, n_eval=50)
    runs = toy.toy_gan_runs((0, 1), cfg)
    assert list(runs) == ["saturating", "non-saturating"] and all(len(r) == 2 for r in runs.values())
    samples = [r.samples for rs in runs.values() for r in rs]
    assert all(s.shape == (50, 2) for s in samples)
    assert not np.allclose(samples[0], samples[1])  # seeds differ
    # after 0 steps every member is its seed's untrained generator, whatever else is in the population
    untrained = toy.ToyGANConfig(steps=0, n_eval=50)
    np.testing.assert_allclose(toy.toy_gan_runs((1,), untrained)["saturating"][0].samples,
                               toy.toy_gan_runs((0, 1), untrained)["non-saturating"][1].samples, atol=1e-6)


def test_default_configs_are_built_at_call_time(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    assert toy.ToyGANConfig().steps == 800 and toy.OneDConfig().steps == 800
    monkeypatch.setenv(config.QUICK_ENV, "0")
    assert toy.ToyGANConfig().steps == 2000
    defaults = [toy.train_1d_discriminator, toy.train_toy_gan, toy.toy_gan_runs, toy.generator_gradient_norms,
                toy_vae.gradient_variance]
    for fn in defaults:
        cfg = inspect.signature(fn).parameters["cfg"].default
        assert cfg is None, f"{fn.__name__}: a config built at import would ignore PRODLAB_QUICK set later"


def test_saturating_generator_gradient_vanishes():
    g = toy.generator_gradient_norms(toy.ToyGANConfig(hidden=64), d_steps=150, every=150)
    assert g.d_fake[-1] < 0.05
    assert g.grad_norm["non-saturating"][-1] > 20 * g.grad_norm["saturating"][-1]
