"""prodlab.losses against hand-computed values and torch references (article §2.2, §2.3, §4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from prodlab import losses


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    real = 3 * torch.randn(64, 1, generator=gen, dtype=torch.float64)
    return real, 3 * torch.randn(64, 1, generator=gen, dtype=torch.float64)


def test_discriminator_loss_is_bce_with_logits(logits):
    real, fake = logits
    bce = nn.BCEWithLogitsLoss()
    expected = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(losses.discriminator_loss(real, fake), expected)


def test_discriminator_loss_is_the_article_formula(logits):
    real, fake = logits
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    article = -(torch.log(d_real) + torch.log(1 - d_fake)).mean()
    torch.testing.assert_close(losses.discriminator_loss(real, fake), article)
    # BCE on the concatenated batch averages over 2N terms: half of the article's L_D
    both = F.binary_cross_entropy_with_logits(torch.cat([real, fake]), torch.cat([torch.ones_like(real),
                                                                                  torch.zeros_like(fake)]))
    torch.testing.assert_close(losses.discriminator_loss(real, fake), 2 * both)


def test_losses_at_undecided_discriminator():
    zero = torch.zeros(5)
    assert losses.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))  # -V = log 4
    assert losses.generator_loss_nonsaturating(zero).item() == pytest.approx(math.log(2))
    assert losses.generator_loss_saturating(zero).item() == pytest.approx(-math.log(2))


def test_generator_losses_match_their_formulas(logits):
    _, fake = logits
    d = torch.sigmoid(fake)
    torch.testing.assert_close(losses.generator_loss_nonsaturating(fake), -torch.log(d).mean())
    torch.testing.assert_close(losses.generator_loss_saturating(fake), torch.log(1 - d).mean())


def test_generator_gradients_wrt_logit(logits):
    _, fake = logits
    n = fake.numel()
    fake = fake.clone().requires_grad_(True)
    (g_ns,) = torch.autograd.grad(losses.generator_loss_nonsaturating(fake), fake)
    (g_sat,) = torch.autograd.grad(losses.generator_loss_saturating(fake), fake)
    torch.testing.assert_close(g_ns * n, torch.sigmoid(fake) - 1)  # close to -1 when D rejects the fake
    torch.testing.assert_close(g_sat * n, -torch.sigmoid(fake))  # close to 0 when D rejects the fake


def test_confident_logits_stay_finite():
    big = torch.tensor([-1000.0, 1000.0], requires_grad=True)
    values = [
        losses.discriminator_loss(big, big),
        losses.generator_loss_nonsaturating(big),
        losses.generator_loss_saturating(big),
    ]
    for value in values:
        assert torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, big)
        assert torch.isfinite(grad).all()
    # -log sigmoid(-1000) = 1000 exactly (a probability-based loss would give inf)
    assert losses.generator_loss_nonsaturating(torch.tensor([-1000.0])).item() == pytest.approx(1000.0)
    assert losses.generator_loss_saturating(torch.tensor([1000.0])).item() == pytest.approx(-1000.0)


def test_hinge_and_least_squares_by_hand():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # relu(1 - [2, .5]) = [0, .5]; relu(1 + [-2, .5]) = [0, 1.5]
    assert losses.discriminator_loss_hinge(real, fake).item() == pytest.approx(0.25 + 0.75)
    assert losses.generator_loss_hinge(fake).item() == pytest.approx(0.75)
    # 1/2 mean([1, .25]) + 1/2 mean([4, .25]) ; 1/2 mean([9, .25])
    assert losses.discriminator_loss_lsgan(real, fake).item() == pytest.approx(0.3125 + 1.0625)
    assert losses.generator_loss_lsgan(fake).item() == pytest.approx(2.3125)


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(16, 8, generator=gen, dtype=torch.float64)
    logvar = torch.randn(16, 8, generator=gen, dtype=torch.float64)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar), reference)
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar, reduction="mean"), reference.mean())
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar, reduction="sum"), reference.sum())


def test_gaussian_kl_by_hand():
    assert losses.gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0  # q = prior
    # mu = 1, var = 1 in each of 3 dims: 1/2 * 1 per dim, summed over dims
    assert losses.gaussian_kl(torch.ones(1, 3), torch.zeros(1, 3)).item() == pytest.approx(1.5)
    # mu = 0, var = e: 1/2 (e - 1 - 1)
    assert losses.gaussian_kl(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(0.5 * (math.e - 2))


def test_bad_reduction_is_an_error():
    with pytest.raises(ValueError, match="reduction"):
        losses.gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2), reduction="batchmean")


def test_reconstruction_mse_sums_pixels_and_averages_images():
    gen = torch.Generator().manual_seed(2)
    x, x_hat = torch.rand(8, 1, 28, 28, generator=gen), torch.rand(8, 1, 28, 28, generator=gen)
    per_image = losses.reconstruction_mse(x_hat, x)
    assert per_image.shape == (8,)
    torch.testing.assert_close(per_image[3], F.mse_loss(x_hat[3], x[3], reduction="sum"))
    torch.testing.assert_close(losses.reconstruction_mse(x_hat, x, reduction="mean"),
                               F.mse_loss(x_hat, x, reduction="sum") / 8)
    # the trap: PyTorch's default mean is 784 times smaller
    torch.testing.assert_close(losses.reconstruction_mse(x_hat, x, reduction="mean"),
                               F.mse_loss(x_hat, x) * 784)


def test_reconstruction_bce_logits_and_probabilities_agree():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    logits = 4 * torch.randn(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    reference = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / 4
    torch.testing.assert_close(losses.reconstruction_bce(logits, x, reduction="mean"), reference)
    torch.testing.assert_close(losses.reconstruction_bce(torch.sigmoid(logits), x, from_logits=False),
                               losses.reconstruction_bce(logits, x))


def test_reconstruction_bce_minimum_is_the_pixel_entropy():
    x = torch.full((1, 10), 0.3, dtype=torch.float64)
    entropy = -10 * (0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    at_x = losses.reconstruction_bce(x, x, from_logits=False).item()
    assert at_x == pytest.approx(entropy)
    assert losses.reconstruction_bce(x + 0.05, x, from_logits=False).item() > at_x
    assert losses.reconstruction_bce(torch.full((1, 10), 1e4), torch.ones(1, 10)).item() == pytest.approx(0.0)


def test_vae_loss_combines_with_beta():
    gen = torch.Generator().manual_seed(4)
    x, x_hat = torch.rand(6, 784, generator=gen), torch.rand(6, 784, generator=gen)
    mu, logvar = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    out = losses.vae_loss(x_hat, x, mu, logvar, beta=4.0)
    torch.testing.assert_close(out.recon, F.mse_loss(x_hat, x, reduction="sum") / 6)
    torch.testing.assert_close(out.kl, losses.gaussian_kl(mu, logvar).mean())
    torch.testing.assert_close(out.total, out.recon + 4.0 * out.kl)
    bce = losses.vae_loss(x_hat, x, mu, logvar, likelihood="bce")
    torch.testing.assert_close(bce.recon, F.binary_cross_entropy_with_logits(x_hat, x, reduction="sum") / 6)
    with pytest.raises(ValueError, match="likelihood"):
        losses.vae_loss(x_hat, x, mu, logvar, likelihood="l1")


def test_gaussian_nll_matches_torch_and_has_the_constant():
    gen = torch.Generator().manual_seed(5)
    x, x_hat = torch.rand(3, 1, 28, 28, generator=gen, dtype=torch.float64), torch.rand(
        3, 1, 28, 28, generator=gen, dtype=torch.float64)
    sigma2 = 0.1
    nll = losses.gaussian_nll(x_hat, x, sigma2)
    reference = -Normal(x_hat, math.sqrt(sigma2)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(nll, reference)
    torch.testing.assert_close(nll.sum(), F.gaussian_nll_loss(x_hat, x, torch.full_like(x, sigma2), full=True,
                                                              reduction="sum"))
    assert losses.gaussian_nll_constant(784, 1.0) == pytest.approx(392 * math.log(2 * math.pi))


def test_decoder_variance_acts_as_beta():
    gen = torch.Generator().manual_seed(6)
    x, x_hat = torch.rand(5, 784, generator=gen, dtype=torch.float64), torch.rand(5, 784, generator=gen,
                                                                                 dtype=torch.float64)
    mu, logvar = torch.randn(5, 8, generator=gen, dtype=torch.float64), torch.randn(5, 8, generator=gen,
                                                                                    dtype=torch.float64)
    sigma2 = 0.05
    neg_elbo = (losses.gaussian_nll(x_hat, x, sigma2) + losses.gaussian_kl(mu, logvar)).mean()
    scaled = 2 * sigma2 * (neg_elbo - losses.gaussian_nll_constant(784, sigma2))
    beta = losses.beta_from_sigma2(sigma2)
    assert beta == pytest.approx(0.1)
    torch.testing.assert_close(scaled, losses.vae_loss(x_hat, x, mu, logvar, beta=beta).total)


def test_r1_penalty_of_a_linear_discriminator_is_half_gamma_w_squared():
    d = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))  # l(x) = w.x + b: grad_x l = w for every image
    x = torch.randn(5, 3, 2, 2)
    penalty = losses.r1_penalty(d, x, gamma=4.0)
    w = d[1].weight.detach()
    assert torch.isclose(penalty, 0.5 * 4.0 * w.pow(2).sum())
    penalty.backward()  # differentiable in D's weights (create_graph): d/dw gamma/2 |w|^2 = gamma w
    assert torch.allclose(d[1].weight.grad, 4.0 * w) and not x.requires_grad


def test_free_bits_kl_clamps_each_dimension_after_the_batch_mean():
    mu = torch.tensor([[0.0, 2.0], [0.2, 1.0]], requires_grad=True)
    logvar = torch.zeros(2, 2)
    per_dim = 0.5 * mu.detach().pow(2).mean(0)  # [0.01, 1.25]
    assert torch.isclose(losses.free_bits_kl(mu, logvar, 0.0), losses.gaussian_kl(mu, logvar, "mean"))
    value = losses.free_bits_kl(mu, logvar, 0.5)
    assert torch.isclose(value, 0.5 + per_dim[1])
    value.backward()
    assert (mu.grad[:, 0] == 0).all() and (mu.grad[:, 1] != 0).all()  # a dimension under its free bits gets no pull
