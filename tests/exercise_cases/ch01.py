"""Chapter 01's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prodlab import exercises, losses


def reparameterise(mu, logvar, eps):
    return mu + (0.5 * logvar).exp() * eps


CASES = {
    exercises.check_nonsaturating_loss: (
        lambda logits: F.softplus(-logits).mean(),
        [(lambda logits: -torch.log(torch.sigmoid(logits)).mean(), "inf"),
         (lambda logits: -F.softplus(logits).mean(), "saturating"),
         (lambda logits: F.softplus(-logits).sum(), "sum"),
         (lambda logits: -F.softplus(-logits).mean(), "sign")],
    ),
    exercises.check_gaussian_kl: (
        lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1),
        [(lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(-1), "sum"),
         (lambda mu, logvar: (mu**2 + logvar.exp() - 1 - logvar).sum(-1), "1/2"),
         (lambda mu, logvar: losses.gaussian_kl(mu, logvar, reduction="mean"), "per sample"),
         (lambda mu, logvar: 0.5 * (mu**2 + (2 * logvar).exp() - 1 - 2 * logvar).sum(-1), "exp(logvar)")],
    ),
    exercises.check_reparameterise: (
        reparameterise,
        [(lambda mu, logvar, eps: mu + logvar.exp() * eps, "exp(logvar / 2)"),
         (lambda mu, logvar, eps: reparameterise(mu.detach(), logvar.detach(), eps), "no gradient"),
         (lambda mu, logvar, eps: mu.detach() + (0.5 * logvar).exp() * eps, "gradient is not"),
         (lambda mu, logvar, eps: torch.tensor(reparameterise(mu, logvar, eps).tolist()), "no gradient")],
    ),
    exercises.check_gradient_ratio: (
        lambda logit: math.exp(-logit),
        [(lambda logit: math.exp(logit), "upside down"), (lambda logit: 1.0, "wrong values")],
    ),
}
