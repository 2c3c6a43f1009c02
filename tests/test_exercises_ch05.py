"""Chapter 05's exercise checkers pass the reference answer, fail known wrong answers with their hint, fail the stub."""

from __future__ import annotations

import math

import pytest
import torch

from prodlab import edit, exercises


def stub(*_args):
    raise NotImplementedError()  # nbgrader's default stub


def slerp(z0, z1, t):
    t = t.reshape(-1, 1)
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos(torch.dot(u0, u1))
    on_circle = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return on_circle * ((1 - t) * z0.norm() + t * z1.norm())


def crossover(levels, a, b):
    gap = [u - v for u, v in zip(a, b, strict=True)]
    for i in range(1, len(gap)):
        if gap[i - 1] > 0 >= gap[i]:
            return levels[i - 1] + (levels[i] - levels[i - 1]) * gap[i - 1] / (gap[i - 1] - gap[i])
    return None


def height(x):
    mass = x.sum(dim=(1, 3))  # N x 28 rows
    p = mass / mass.sum(1, keepdim=True)
    rows = torch.arange(28, dtype=x.dtype)
    mean = (p * rows).sum(1)
    return math.sqrt(12) * (p * (rows - mean[:, None]) ** 2).sum(1).sqrt()


def first_level_after(levels, a, b):
    gap = [u - v for u, v in zip(a, b, strict=True)]
    return next((levels[i] for i in range(1, len(gap)) if gap[i - 1] > 0 >= gap[i]), None)


CASES = {
    exercises.check_slerp: (
        slerp,
        [(edit.lerp, "straight line"),
         (lambda z0, z1, t: slerp(z0 / z0.norm(), z1 / z1.norm(), t), "norm 1"),
         (lambda z0, z1, t: slerp(z0, z1, t) * 1.01, "wrong values")],
    ),
    exercises.check_crossover: (
        crossover,
        [(first_level_after, "grid level"), (lambda levels, a, b: 0.15, "None")],
    ),
    exercises.check_height: (
        height,
        [(edit.width, "width"), (lambda x: height(x) / math.sqrt(12), "sqrt(12)")],
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


def test_crossover_and_height_on_known_answers():
    assert edit.crossover([0.1, 0.2, 0.3], [3.0, 1.0, -1.0], [0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert edit.crossover([0.1, 0.2], [1.0, 1.0], [0.0, 0.0]) is None
    box = torch.zeros(1, 1, 28, 28)
    box[..., 4:14, 10:12] = 1.0  # 10 rows tall, 2 columns wide
    assert float(edit.height(box)[0]) == pytest.approx(math.sqrt(10**2 - 1), rel=1e-5)
    assert float(edit.width(box)[0]) == pytest.approx(math.sqrt(2**2 - 1), rel=1e-5)
