"""Chapter 02's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prodlab import exercises, losses


def r1(d, x, gamma, out=lambda logits: logits, create_graph=True, square=True, half=True, mean=True):
    x = x.requires_grad_(True)
    (grad,) = torch.autograd.grad(out(d(x)).sum(), x, create_graph=create_graph)
    norms = grad.flatten(1).pow(2).sum(1) if square else grad.flatten(1).norm(dim=1)
    return (0.5 if half else 1.0) * gamma * (norms.mean() if mean else norms.sum())


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
    exercises.check_hinge_loss: (
        lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
        [(lambda r, f: F.relu(1 + r).mean() + F.relu(1 - f).mean(), "swapped"),
         (lambda r, f: (1 - r).mean() + (1 + f).mean(), "max(0"),
         (lambda r, f: F.relu(-r).mean() + F.relu(f).mean(), "margin"),
         (lambda r, f: F.relu(1 - r).sum() + F.relu(1 + f).sum(), "sum over the batch"),
         (lambda r, f: losses.discriminator_loss(r, f), "wrong values")],
    ),
    exercises.check_r1_penalty: (
        r1,
        [(lambda d, x, g: r1(d, x, g, out=torch.sigmoid), "logit"),
         (lambda d, x, g: r1(d, x, g, square=False), "squared"),
         (lambda d, x, g: r1(d, x, g, half=False), "1/2"),
         (lambda d, x, g: r1(d, x, g, mean=False), "average"),
         (lambda d, x, g: r1(d, x, g, create_graph=False), "create_graph"),
         (lambda d, x, g: r1(d, x, g).detach(), "create_graph"),
         (lambda d, x, g: None, "expected a tensor")],
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
