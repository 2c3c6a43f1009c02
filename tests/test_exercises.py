"""The exercise checkers pass the package's answer, fail known wrong answers with their hint, and fail the stub."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prodlab import data, exercises, losses


def stub(*_args):
    raise NotImplementedError()  # nbgrader's default stub (ClearSolutions.code_stub)


def reparameterise(mu, logvar, eps):
    return mu + (0.5 * logvar).exp() * eps


# checker -> (a correct answer, [(a known wrong answer, a word its hint must contain), ...])
CASES = {
    exercises.check_class_means: (
        data.class_means,
        [(lambda im, lab: data.class_means(im.float(), lab), "255"),
         (lambda im, lab: (im.float() / 255).mean(0).expand(10, 28, 28), "same image"),
         (lambda im, lab: data.class_means(im, lab)[:9], "shape")],
    ),
    exercises.check_mirror_asymmetry: (
        data.mirror_asymmetry,
        [(lambda m: (m - m.flip(-2)).flatten(1).norm(dim=1) / m.flatten(1).norm(dim=1), "top to bottom"),
         (lambda m: (m - m.flip(-1)).flatten(1).norm(dim=1), "relative")],
    ),
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


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_passes_the_reference(checker, capsys):
    checker(CASES[checker][0])
    assert capsys.readouterr().out.strip().endswith(": correct")


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_fails_known_wrong_answers_with_their_hint(checker, capsys):
    for wrong, word in CASES[checker][1]:
        with pytest.raises(exercises.ExerciseFailed) as failure:
            checker(wrong)
        assert word in str(failure.value), f"{checker.__name__}: hint {str(failure.value)!r} lacks {word!r}"
    assert "correct" not in capsys.readouterr().out


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_fails_the_stub(checker):
    with pytest.raises(exercises.ExerciseFailed, match="not answered yet"):
        checker(stub)


def test_a_crashing_answer_gets_one_line():
    with pytest.raises(exercises.ExerciseFailed, match="raised ZeroDivisionError"):
        exercises.check_gaussian_kl(lambda mu, logvar: 1 / 0)
