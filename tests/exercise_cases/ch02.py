"""Chapter 02's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prodlab import exercises, losses


def d_step(d, opt_d, x, fake, detach=True, zero=True, update=True):
    loss = losses.discriminator_loss(d(x), d(fake.detach() if detach else fake))
    if zero:
        opt_d.zero_grad()
    loss.backward()
    if update:
        opt_d.step()
    return loss


def ndtri_window(u, t):
    t = torch.tensor(t, dtype=torch.float64)
    low, high = torch.special.ndtr(-t), torch.special.ndtr(t)
    return torch.special.ndtri(low + u * (high - low))


@torch.no_grad()
def ema_by_hand(ema, model, decay):
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.mul_(decay).add_((1 - decay) * p)


@torch.no_grad()
def ema_all_floats(ema, model, decay):
    for a, b in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if a.is_floating_point():
            a.mul_(decay).add_((1 - decay) * b)


CASES = {
    exercises.check_discriminator_loss: (
        lambda r, f: F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
        + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)),
        [(lambda r, f: F.binary_cross_entropy_with_logits(torch.cat([r, f]), torch.cat([r * 0 + 1, f * 0])), "2N"),
         (lambda r, f: losses.discriminator_loss(f, r), "swapped"),
         (lambda r, f: -(torch.log(torch.sigmoid(r)) + torch.log(1 - torch.sigmoid(f))).mean(), "inf"),
         (lambda r, f: -losses.discriminator_loss(r, f), "sign")],
    ),
    exercises.check_discriminator_step: (
        d_step,
        [(lambda d, o, x, f: d_step(d, o, x, f, detach=False), "detach"),
         (lambda d, o, x, f: d_step(d, o, x, f, zero=False), "zero_grad"),
         (lambda d, o, x, f: d_step(d, o, x, f, update=False), "opt_d.step"),
         (lambda d, o, x, f: d_step(d, o, f.detach(), x), "swapped"),
         (lambda d, o, x, f: d_step(d, o, x, f).item() + 1.0, "returned loss"),
         (lambda d, o, x, f: None, "return the loss")],
    ),
    exercises.check_truncated_normal: (
        ndtri_window,
        [(lambda u, t: torch.special.ndtri(u).clamp(-t, t), "clipped"),
         (lambda u, t: torch.special.ndtri(u), "not truncated"),
         (lambda u, t: t * torch.special.ndtri(u), "scaled"),
         (lambda u, t: ndtri_window(u, t)[:10], "shape")],
    ),
    exercises.check_ema_update: (
        ema_by_hand,
        [(lambda e, m, decay: ema_by_hand(e, m, 1 - decay), "swapped"),
         (ema_all_floats, "BN running statistics"),
         (lambda e, m, decay: ema_by_hand(e, m, 0.0), "decay 0"),
         (lambda e, m, decay: [decay * a + (1 - decay) * b
                               for a, b in zip(e.parameters(), m.parameters(), strict=True)], "in place"),
         (lambda e, m, decay: [a.mul_(decay) for a in e.parameters()], "raised")],
    ),
}
