"""Editing with the diffusion prior (notebook 05, ``prodlab.edit.diffusion_prior``): the SDEdit rescaling identity,
RePaint's visible pixels, seeds, and a real gain over the degraded input with the shipped flow model."""

from __future__ import annotations

import pytest
import torch

from prodlab import data, diffusion, edit
from prodlab.edit import diffusion_prior


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return edit.test_images(16)


@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.3])
def test_a_rescaled_noisy_image_lies_on_the_flow_path_at_t_star(x, sigma):
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    y = x + sigma * n  # unclamped, pixel scale: 2 sigma in the model's [-1, 1]
    start, t_star = edit.sdedit_start(y, sigma)
    assert t_star == pytest.approx(2 * sigma / (1 + 2 * sigma))
    on_path = diffusion.add_noise(data.normalize(x), n, torch.tensor([t_star]), "flow")
    assert torch.allclose(start, on_path, atol=1e-6)


def test_unclamp_only_touches_clamped_pixels_and_pushes_them_outwards(x):
    y = edit.gaussian_noise(x, 0.3, seed=0)
    u = diffusion_prior.unclamp(y, 0.3, torch.Generator().manual_seed(5))
    inside = (y > 0) & (y < 1)
    assert torch.equal(u[inside], y[inside])
    assert bool((u[y <= 0] <= 0).all()) and bool((u[y >= 1] >= 1).all())


def test_sdedit_is_deterministic_in_range_and_beats_the_noisy_input(x):
    y = edit.gaussian_noise(x, 0.2, seed=0)
    out = edit.sdedit(y, 0.2)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, edit.sdedit(y, 0.2)) and not torch.equal(out, edit.sdedit(y, 0.2, seed=6))
    assert float(edit.psnr(out, x).mean()) > float(edit.psnr(y, x).mean()) + 3.0


def test_sdedit_reads_uint8_like_floats(x):
    y8 = (edit.gaussian_noise(x[:4], 0.1, seed=0) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # N x H x W x C
    assert torch.equal(edit.sdedit(y8, 0.1), edit.sdedit(y8.permute(0, 3, 1, 2).float() / 255, 0.1))


def test_images_of_another_shape_than_the_models_are_refused(x):
    with pytest.raises(ValueError, match="shape"):  # uint8 channels first is not the stored layout: not misread
        edit.sdedit((x[:2] * 255).round().to(torch.uint8), 0.1)
    with pytest.raises(ValueError, match="spec"):
        edit.sdedit(edit.downsample(x[:2]), 0.1)
    with pytest.raises(ValueError, match="spec"):
        edit.repaint(x[:2, :, :8], torch.zeros(2, *x.shape[1:], dtype=torch.bool))


def test_repaint_keeps_the_visible_pixels_is_seeded_and_beats_mean_fill(x):
    m = edit.missing_mask("center", len(x))
    y = x.masked_fill(m, 0.0)
    out = edit.repaint(y, m, steps=4, resample=3)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out[~m], x[~m])
    assert torch.equal(out, edit.repaint(y, m, steps=4, resample=3))
    assert not torch.equal(out, edit.repaint(y, m, steps=4, resample=3, seed=6))
    assert float(edit.psnr(out, x, m).mean()) > float(edit.psnr(edit.mean_fill(y, m), x, m).mean()) + 2.0


def test_renoise_reaches_the_noise_level_of_the_later_time():
    x0 = torch.ones(20_000)  # at time t: mean (1 - t) x0, s.d. t
    gen = torch.Generator().manual_seed(0)
    x_from = diffusion.add_noise(x0, torch.randn(x0.shape, generator=gen), torch.tensor([0.3]), "flow")
    x_to = diffusion_prior.renoise(x_from, 0.3, 0.6, gen)
    assert float(x_to.mean()) == pytest.approx(0.4, abs=0.02) and float(x_to.std()) == pytest.approx(0.6, rel=0.02)


def test_settings_count_the_network_calls():
    s = diffusion_prior.settings()
    assert s["repaint_calls"] == 1 + (edit.REPAINT_STEPS - 1) * edit.REPAINT_RESAMPLE
    assert s["sdedit_calls"] == diffusion.network_calls(edit.SDEDIT_SAMPLER, edit.SDEDIT_STEPS, guided=False)
