"""Exercise checkers of chapter 02 (GANs: the hinge loss, step 5's R1 penalty, the truncation trick, the EMA of G)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from prodlab import data, losses
from prodlab.exercises.core import ExerciseFailed, call, close, verdict
from prodlab.models import gan as gan_models

SMALL = gan_models.GANConfig(data.spec(), latent_dim=8, width=4)  # a GAN small enough to check in milliseconds
LOGITS = 32  # per batch in the loss checks: four confident cases, the rest random


def _logit_pair() -> tuple[Tensor, Tensor]:
    """Real and fake logits from confident mistakes (+-200) to confident hits, float32 as a network gives them."""
    gen = torch.Generator().manual_seed(7)
    real = torch.cat([torch.tensor([-200.0, -5.0, 0.0, 40.0]), 2 + 2 * torch.randn(LOGITS - 4, generator=gen)])
    fake = torch.cat([torch.tensor([200.0, 5.0, 0.0, -40.0]), -1 + 2 * torch.randn(LOGITS - 4, generator=gen)])
    return real, fake


def check_hinge_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 02.1: the hinge discriminator loss ``E[max(0, 1 - l_real)] + E[max(0, 1 + l_fake)]`` from the
    logits, as :func:`prodlab.losses.discriminator_loss_hinge`."""
    title = "hinge loss"
    real, fake = _logit_pair()
    want = losses.discriminator_loss_hinge(real, fake)
    relu = torch.nn.functional.relu
    mistakes = {
        "real and fake swapped: D wants real logits above +1 and fake logits below -1.":
            losses.discriminator_loss_hinge(fake, real),
        "no max(0, .): without the hinge D keeps pushing logits that are already past the margin (the loss is "
        "unbounded below).": (1 - real).mean() + (1 + fake).mean(),
        "margin 0: the hinge sits at 1 - l for real and 1 + l for fake.": relu(-real).mean() + relu(fake).mean(),
        "a sum over the batch: average each term over its own batch (1/N).":
            relu(1 - real).sum() + relu(1 + fake).sum(),
    }
    got = call(title, fn, real.clone(), fake.clone())
    verdict(title, got, want, mistakes, "relu(1 - real_logits).mean() + relu(1 + fake_logits).mean().")


def _small_discriminator() -> nn.Module:
    torch.manual_seed(0)
    return gan_models.Discriminator(SMALL)


def _input_grads(x: Tensor, out: Callable[[Tensor], Tensor]) -> Tensor:
    """The gradient of ``out(D(x)).sum()`` with respect to ``x``, one flat row per image (small D, seed 0)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(out(_small_discriminator()(x)).sum(), x)
    return grad.flatten(1)


def check_r1_penalty(fn: Callable[[nn.Module, Tensor, float], Tensor]) -> None:
    """Exercise 02.2: ``fn(d, x, gamma)`` -> the R1 penalty ``gamma/2 E||grad_x l(x)||^2`` on the real batch ``x``,
    as :func:`prodlab.losses.r1_penalty`, and differentiable in D's weights (``create_graph=True``)."""
    title = "R1 penalty"
    x = torch.rand(16, *SMALL.image.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    gamma = 10.0
    want = losses.r1_penalty(_small_discriminator(), x, gamma)
    d = _small_discriminator()
    got = call(title, fn, d, x.clone(), gamma)
    if isinstance(got, Tensor) and close(got.detach().double(), want.detach().double(), 1e-4, 1e-6):
        if not got.requires_grad:
            raise ExerciseFailed(f"{title}: the value is right, but it does not depend on D's weights: compute "
                                 "the gradient with torch.autograd.grad(..., create_graph=True), so that the "
                                 "penalty can train D.")
        got.backward()
        if all(p.grad is None or not p.grad.any() for p in d.parameters()):
            raise ExerciseFailed(f"{title}: no gradient reaches D's weights: use create_graph=True.")
    g_logit = _input_grads(x, lambda t: t)
    mistakes = {
        "that is the gradient of D = sigmoid(l): R1 penalises the gradient of the logit l.":
            0.5 * gamma * _input_grads(x, torch.sigmoid).pow(2).sum(1).mean(),
        "the norm is not squared: R1 is gamma/2 times the squared norm of the gradient.":
            0.5 * gamma * g_logit.norm(dim=1).mean(),
        "the factor 1/2 is missing: R1 = gamma/2 E||grad||^2.": 2 * want,
        "summed over the images: average the squared norms over the batch.": 0.5 * gamma * g_logit.pow(2).sum(),
    }
    verdict(title, got, want, mistakes, "x.requires_grad_(True), g = torch.autograd.grad(d(x).sum(), x, "
            "create_graph=True)[0], then gamma / 2 * squared norm per image, averaged.", rtol=1e-4)


def check_truncated_normal(fn: Callable[[Tensor, float], Tensor]) -> None:
    """Exercise 02.3: N(0, 1) truncated to ``[-t, t]`` from uniform ``u`` by the inverse CDF, as
    :func:`prodlab.models.gan.truncated_normal`."""
    title = "truncated normal"
    u = torch.cat([torch.tensor([1e-6, 0.5, 1 - 1e-6]), torch.rand(61, generator=torch.Generator().manual_seed(3))])
    u = u.double()
    thresholds = (2.0, 0.5)
    plain = torch.special.ndtri(u)
    want = torch.cat([gan_models.truncated_normal(u, t) for t in thresholds])
    mistakes = {
        "that is N(0, 1) clipped at +-t: the clipped values pile up on the edges. Map u into "
        "[Phi(-t), Phi(t)] before the inverse CDF.": torch.cat([plain.clamp(-t, t) for t in thresholds]),
        "not truncated: all of N(0, 1). Map u into [Phi(-t), Phi(t)] first.": torch.cat([plain, plain]),
        "scaled, not truncated: psi * z keeps the tails' shape.": torch.cat([t * plain for t in thresholds]),
    }
    got = [call(title, fn, u.clone(), t) for t in thresholds]
    try:
        got = torch.cat([torch.as_tensor(g).detach().double().reshape(-1) for g in got])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseFailed(f"{title}: expected a tensor, got {type(got[0]).__name__} ({err})") from None
    verdict(title, got, want, mistakes, "z = Phi^-1(Phi(-t) + u (Phi(t) - Phi(-t))) with torch.special.ndtr "
            "(Phi) and torch.special.ndtri (its inverse).")


def _pair() -> tuple[gan_models.Generator, gan_models.Generator]:
    torch.manual_seed(4)
    ema, model = gan_models.Generator(SMALL), gan_models.Generator(SMALL)
    model(torch.randn(8, SMALL.latent_dim))  # train mode: the model's BN running statistics move away from ema's
    return ema, model


def _state(module: nn.Module) -> Tensor:
    return torch.cat([v.detach().flatten().double() for v in module.state_dict().values() if v.is_floating_point()])


def check_ema_update(fn: Callable[[nn.Module, nn.Module, float], object]) -> None:
    """Exercise 02.4: ``fn(ema, model, decay)`` moves every parameter of ``ema`` in place to
    ``decay * ema + (1 - decay) * model``, leaving the BN buffers alone, as :func:`prodlab.models.gan.ema_update`."""
    title = "EMA update"
    decay = 0.9
    ref_ema, model = _pair()
    gan_models.ema_update(ref_ema, model, decay)
    ema, model = _pair()
    before = _state(ema)
    call(title, fn, ema, model, decay)
    got = _state(ema)
    if torch.equal(got, before):
        raise ExerciseFailed(f"{title}: ema did not change: update its parameters in place (p_ema.mul_ / lerp_ / "
                             "copy_ under torch.no_grad()), do not return a new tensor or module.")
    swapped, copied = _pair()[0], _pair()[0]
    gan_models.ema_update(swapped, model, 1 - decay)
    gan_models.ema_update(copied, model, 0.0)
    averaged_buffers, _ = _pair()
    with torch.no_grad():
        for a, b in zip(averaged_buffers.state_dict().values(), model.state_dict().values(), strict=True):
            if a.is_floating_point():
                a.lerp_(b, 1 - decay)
    mistakes = {"decay and 1 - decay swapped: the average keeps decay of its old value.": _state(swapped),
                "the BN running statistics were averaged too: update the parameters only (ema.parameters()).":
                    _state(averaged_buffers),
                "ema was overwritten with the model: that is decay 0.": _state(copied)}
    verdict(title, got, _state(ref_ema), mistakes,
            "for each pair of parameters: p_ema <- decay * p_ema + (1 - decay) * p.")
