"""Chapter 07's exercise checkers pass the reference answer, fail known wrong answers with their hint, fail the stub."""

from __future__ import annotations

import pytest
import torch

from prodlab import edit, exercises
from prodlab.exercises.ch07 import shoes


def stub(*_args):
    raise NotImplementedError()  # nbgrader's default stub


def moved_code(z, steps, offsets):
    return z + sum(t * steps[prop] for prop, t in offsets.items())


def mix_code(za, zb, mix, spherical):
    return (edit.slerp if spherical else edit.lerp)(za[0], zb[0], torch.tensor([mix]))


def heel_height(x):
    rows = torch.arange(28, dtype=x.dtype)

    def row_centre(part):
        mass = part.sum(dim=(1, 3))
        return (mass * rows).sum(1) / mass.sum(1).clamp_min(1e-6)

    return row_centre(x[..., :14]) - row_centre(x[..., 14:])


CASES = {
    exercises.check_moved_code: (
        moved_code,
        [(lambda z, steps, offsets: z + sum(steps.values()), "offsets[prop]"),
         (lambda z, steps, offsets: z - (moved_code(z, steps, offsets) - z), "sign"),
         (lambda z, steps, offsets: moved_code(z, steps, offsets) - z, "starting code")],
    ),
    exercises.check_mix_code: (
        mix_code,
        [(lambda za, zb, mix, spherical: mix_code(za, zb, 1 - mix, spherical), "wrong way"),
         (lambda za, zb, mix, spherical: mix_code(za, zb, mix, False), "straight line")],
    ),
    exercises.check_heel_height: (
        heel_height,
        [(lambda x: -heel_height(x), "rows count downwards"),
         (lambda x: heel_height(x)[:2], "one value per image"),
         (lambda x: heel_height(x) * x.amax(dim=(1, 2, 3)), "darker"),
         (lambda x: x.sum(dim=(1, 2, 3)) * 0, "must grow")],
    ),
}


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_passes_the_reference(checker, capsys):
    checker(CASES[checker][0])
    assert capsys.readouterr().out.strip().endswith(": correct")


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_fails_known_wrong_answers_with_their_hint(checker):
    for wrong, word in CASES[checker][1]:
        with pytest.raises(exercises.ExerciseFailed) as failure:
            checker(wrong)
        assert word in str(failure.value), f"{checker.__name__}: hint {str(failure.value)!r} lacks {word!r}"


@pytest.mark.parametrize("checker", CASES, ids=lambda c: c.__name__)
def test_checker_fails_the_stub(checker):
    with pytest.raises(exercises.ExerciseFailed, match="not answered yet"):
        checker(stub)


def test_synthetic_shoes_raise_their_heel():
    x = shoes([0, 4])
    assert x.shape == (2, 1, 28, 28) and x.amax() == 1.0
    assert x[0, 0, 20:24, 16:26].all() and not x[1, 0, 20:22, 16:23].any()  # the back left the ground
