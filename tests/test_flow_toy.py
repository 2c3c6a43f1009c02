"""Diffusion theory on chapter 01's ring, where every score is exact (prodlab.flow_toy; chapter 08)."""

from __future__ import annotations

import math

import pytest
import torch

from prodlab import diffusion, flow_toy

RING = flow_toy.Ring.of()


def _noised(objective: str, n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0, eps = RING.sample(n, g).double(), torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(n, generator=g, dtype=torch.float64)
    return diffusion.add_noise(x0, eps, t, objective), t


def test_the_ring_is_chapter_01s():
    assert RING.means.shape == (8, 2) and RING.std == 0.05
    assert torch.allclose(RING.means.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    x = RING.sample(4000, torch.Generator().manual_seed(1))
    quality = flow_toy.ring_quality(RING, x)
    assert quality["near"] > 0.999 and quality["modes"] == 8 and abs(quality["spread"] - 1) < 0.05


def test_the_density_is_a_normalised_mixture():
    """log p_t integrates to 1 on a grid (a wrong variance or a missing log K would not)."""
    axis = torch.linspace(-5, 5, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    density = flow_toy.log_density(RING, grid, torch.full((len(grid),), 0.5, dtype=torch.float64)).exp()
    assert abs(float(density.sum()) * float(axis[1] - axis[0]) ** 2 - 1) < 1e-3


@pytest.mark.parametrize("objective", diffusion.OBJECTIVES)
def test_tweedie_from_the_score_is_bayes_posterior_mean(objective):
    x_t, t = _noised(objective)
    tweedie = diffusion.tweedie_x0(x_t, flow_toy.exact_score(RING, x_t, t, objective), t, objective)
    assert torch.allclose(tweedie, flow_toy.posterior_mean(RING, x_t, t, objective), atol=1e-9)


def test_the_ideal_velocity_implies_the_exact_score_and_the_null_label_is_unconditional():
    x_t, t = _noised("flow")
    ideal = flow_toy.ExactVelocity(RING)
    assert torch.allclose(diffusion.score(x_t, ideal(x_t, t), t, "flow"), flow_toy.exact_score(RING, x_t, t), atol=1e-8)
    null = torch.full((len(x_t),), len(RING.means))
    assert torch.allclose(ideal(x_t, t, null), ideal(x_t, t))
    cond = ideal(x_t, t, torch.full((len(x_t),), 3))
    assert torch.allclose(diffusion.score(x_t, cond, t, "flow"), flow_toy.exact_score(RING, x_t, t, label=3),
                          atol=1e-8)


def test_guidance_is_bayes_rule_on_the_ring():
    x_t, _ = _noised("flow")
    t = torch.full((len(x_t),), 0.4, dtype=torch.float64)
    cond, uncond = flow_toy.exact_score(RING, x_t, t, label=2), flow_toy.exact_score(RING, x_t, t)
    classifier = flow_toy.grad_x(lambda x: flow_toy.class_log_posterior(RING, x, t, 2), x_t)
    assert torch.allclose(classifier, cond - uncond, atol=1e-10)
    guided = diffusion.predict(flow_toy.ExactVelocity(RING), x_t, 0.4, torch.full((len(x_t),), 2), 3.0,
                               null_label=len(RING.means))
    assert torch.allclose(diffusion.score(x_t, guided, t, "flow"), 3.0 * cond - 2.0 * uncond, atol=1e-8)
    assert not torch.allclose(guided, flow_toy.ExactVelocity(RING)(x_t, t, torch.full((len(x_t),), 2)))


def test_a_short_training_learns_toward_the_exact_field_and_the_samplers_run():
    net, losses, seconds = flow_toy.train_velocity(RING, flow_toy.FlowToyConfig(steps=300))
    assert len(losses) == 300 and seconds > 0
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    rows = flow_toy.sampler_rows(RING, {"learned": net}, (2, 4), ("euler", "ancestral"), n=200)
    assert [(r["sampler"], r["steps"]) for r in rows] == [("euler", 2), ("euler", 4), ("ancestral", 2),
                                                           ("ancestral", 4)]
    assert all(0 <= r["near"] <= 1 and 0 <= r["modes"] <= 8 and r["spread"] > 0 for r in rows)
    grid, v = flow_toy.field_on_grid(net, 0.5, num=5)
    assert grid.shape == v.shape == (25, 2) and math.isfinite(float(abs(v).sum()))


def test_the_exact_field_samples_the_ring_with_either_sampler():
    rows = flow_toy.sampler_rows(RING, {"exact": flow_toy.ExactVelocity(RING)}, (50,), ("euler", "ancestral"), n=500)
    for row in rows:
        assert row["near"] > 0.99 and row["modes"] == 8 and 0.6 < row["spread"] < 1.3
