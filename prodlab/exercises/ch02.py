"""Exercise checkers of chapter 02 (GANs: §2.2, §3.1.2 steps 5-7, §4; the truncation trick and the EMA of G)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from prodlab import data, losses
from prodlab.exercises.core import ExerciseFailed, call, close, verdict
from prodlab.models import gan as gan_models
from prodlab.training.gan import GAN_LOSSES, gan_step

SMALL = gan_models.GANConfig(data.spec(), latent_dim=8, width=4)  # a GAN small enough to check in milliseconds
LOGITS = 32  # per batch in the loss checks: four confident cases, the rest random


def _logit_pair() -> tuple[Tensor, Tensor]:
    """Real and fake logits from confident mistakes (+-200) to confident hits, float32 as a network gives them."""
    gen = torch.Generator().manual_seed(7)
    real = torch.cat([torch.tensor([-200.0, -5.0, 0.0, 40.0]), 2 + 2 * torch.randn(LOGITS - 4, generator=gen)])
    fake = torch.cat([torch.tensor([200.0, 5.0, 0.0, -40.0]), -1 + 2 * torch.randn(LOGITS - 4, generator=gen)])
    return real, fake


def check_discriminator_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 02.1: the article's ``L_D`` from the logits with binary cross-entropy, as
    :func:`prodlab.losses.discriminator_loss`; must stay finite for logits of +-200."""
    title = "discriminator loss"
    real, fake = _logit_pair()
    want = losses.discriminator_loss(real, fake)
    sp = torch.nn.functional.softplus
    mistakes = {
        "half of L_D: BCE on the concatenated batch averages over 2N; average real and fake each over its own N.":
            want / 2,
        "labels swapped: real images have label 1, fakes label 0.": losses.discriminator_loss(fake, real),
        "a sum over the batch: L_D averages each term (1/N).": sp(-real).sum() + sp(fake).sum(),
        "wrong sign: L_D = -[log D(x) + log(1 - D(G(z)))] is positive.": -want,
    }
    got = call(title, fn, real.clone(), fake.clone())
    verdict(title, got, want, mistakes, "BCE(real logits, 1) + BCE(fake logits, 0), e.g. with "
            "F.binary_cross_entropy_with_logits, which stays finite for any logit.")


def _small_gan(seed: int) -> tuple[gan_models.GAN, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    gan = gan_models.GAN(SMALL)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for p in gan.discriminator.parameters():  # stale gradients of an earlier step: a D step must clear them
        p.grad = torch.full_like(p, 0.5)
    return gan, opt_g, opt_d


def _flat(params) -> Tensor:
    return torch.cat([p.detach().flatten() for p in params]).double()


def _d_step_by(step: Callable[..., object], real: Tensor) -> tuple[gan_models.GAN, object]:
    """A fresh small GAN (seed 0), its fakes G(z) for seed-1 noise, and ``step(d, opt_d, x, fake)`` applied."""
    gan, _, opt_d = _small_gan(0)
    fake = gan.generator(gan.noise(len(real), torch.Generator().manual_seed(1)))
    return gan, step(gan.discriminator, opt_d, real, fake)


def _wrong_step(zero: bool, detach: bool, swap: bool, update: bool) -> Callable[..., Tensor]:
    def step(d: nn.Module, opt_d: torch.optim.Optimizer, x: Tensor, fake: Tensor) -> Tensor:
        real_logits, fake_logits = d(x), d(fake.detach() if detach else fake)
        loss = losses.discriminator_loss(*((fake_logits, real_logits) if swap else (real_logits, fake_logits)))
        if zero:
            opt_d.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            opt_d.step()
        return loss
    return step


def check_discriminator_step(fn: Callable[[nn.Module, torch.optim.Optimizer, Tensor, Tensor], Tensor]) -> None:
    """Exercise 02.2: §3.1.2 step 5, ``fn(d, opt_d, x, fake)`` updates D once with ``L_D`` and returns the loss.

    Compared with the D that :func:`prodlab.training.gan.gan_step` leaves on the same small GAN, batch and noise
    (D's parameters only: step 6 moves D's BN running statistics but never its weights); G must get no gradient.
    """
    title = "discriminator step"
    real = torch.rand(16, *SMALL.image.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ref, opt_g, opt_d = _small_gan(0)
    row = gan_step(ref, opt_g, opt_d, GAN_LOSSES["bce"], real, None, torch.Generator().manual_seed(1))
    want = _flat(ref.discriminator.parameters())
    gan, loss = _d_step_by(lambda *a: call(title, fn, *a), real)
    if any(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.generator.parameters()):
        raise ExerciseFailed(f"{title}: G's parameters got gradients: detach the fakes (fake.detach()) in step 5, "
                             "so L_D moves D only.")
    try:
        loss_value = float(loss.detach() if isinstance(loss, Tensor) else loss)
    except (TypeError, ValueError, RuntimeError):
        kind = type(loss).__name__
        raise ExerciseFailed(f"{title}: return the loss L_D (a tensor or a number), not {kind}") from None
    got = _flat(gan.discriminator.parameters())
    if close(got, want, 1e-5, 1e-6) and abs(loss_value - row["loss_d"]) > 1e-5:
        raise ExerciseFailed(f"{title}: D is right but the returned loss {loss_value:.6f} is not L_D "
                             f"({row['loss_d']:.6f}) before the update.")
    mistakes = {
        "D's weights did not move: call opt_d.step() after loss.backward().":
            _flat(_d_step_by(_wrong_step(True, True, False, False), real)[0].discriminator.parameters()),
        "stale gradients were added to this step's: call opt_d.zero_grad() before loss.backward().":
            _flat(_d_step_by(_wrong_step(False, True, False, True), real)[0].discriminator.parameters()),
        "labels swapped: D must raise its logits on real images and lower them on fakes.":
            _flat(_d_step_by(_wrong_step(True, True, True, True), real)[0].discriminator.parameters()),
    }
    verdict(title, got, want, mistakes,
            "d(x) and d(fake.detach()), L_D = losses.discriminator_loss, zero_grad, backward, opt_d.step().")


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
