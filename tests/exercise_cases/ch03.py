"""Chapter 03's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prodlab import exercises


def broken_sample(mu, logvar, generator):
    return torch.normal(mu, (0.5 * logvar).exp(), generator=generator)


def kl_terms(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def free_bits(mu, logvar, lam):
    return kl_terms(mu, logvar).mean(0).clamp(min=lam).sum()


def iwae(model, x, k, generator, inner=lambda log_w, k: math.log(k) - log_w.logsumexp(1)):
    mu, logvar = model.encode(x)
    eps = torch.randn((len(x), k, mu.shape[1]), generator=generator)
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * eps
    log_q = torch.distributions.Normal(mu[:, None], (0.5 * logvar).exp()[:, None]).log_prob(z).sum(-1)
    log_p_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = model.decode_logits(z.reshape(len(x) * k, -1))
    bce = F.binary_cross_entropy_with_logits(logits, x.repeat_interleave(k, 0), reduction="none").flatten(1).sum(1)
    return inner(-bce.reshape(len(x), k) + log_p_z - log_q, k)


CASES = {
    exercises.check_broken_sample: (
        broken_sample,
        [(lambda mu, logvar, g: mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g), "trick itself"),
         (lambda mu, logvar, g: torch.normal(mu, logvar.exp(), generator=g), "exp(logvar / 2)"),
         (lambda mu, logvar, g: mu.detach(), "random"),
         (lambda mu, logvar, g: mu[:, :3], "shape")],
    ),
    exercises.check_free_bits: (
        free_bits,
        [(lambda mu, logvar, lam: kl_terms(mu, logvar).clamp(min=lam).sum(1).mean(), "per image"),
         (lambda mu, logvar, lam: kl_terms(mu, logvar).mean(0).sum(), "no free bits"),
         (lambda mu, logvar, lam: kl_terms(mu, logvar).mean(0).sum().clamp(min=lam), "no free bits"),
         (lambda mu, logvar, lam: kl_terms(mu, logvar).mean(0).clamp(max=lam).sum(), "min instead of max"),
         (lambda mu, logvar, lam: kl_terms(mu, logvar).mean(0).clamp(min=lam).mean(), "sum over its dimensions"),
         (lambda mu, logvar, lam: torch.maximum(kl_terms(mu, logvar), torch.tensor(lam)).mean(0).sum(), "per image"),
         (lambda mu, logvar, lam: free_bits(mu, 2 * logvar, lam), "wrong values")],
    ),
    exercises.check_implied_beta: (
        lambda shape: math.prod(shape),
        [(lambda shape: shape[1] * shape[2], "channels"), (lambda shape: 1 / math.prod(shape), "upside down"),
         (lambda shape: 784, "wrong values")],
    ),
    exercises.check_iwae: (
        iwae,
        [(lambda m, x, k, g: iwae(m, x, k, g, lambda lw, k: -lw.mean(1)), "mean of log w"),
         (lambda m, x, k, g: iwae(m, x, k, g, lambda lw, k: -lw.logsumexp(1)), "1/K"),
         (lambda m, x, k, g: iwae(m, x, k, g, lambda lw, k: -math.log(k) - lw.logsumexp(1)), "wrong sign"),
         (lambda m, x, k, g: iwae(m, x, k, g, lambda lw, k: -lw.exp().mean(1).log()), "inf")],
    ),
}
