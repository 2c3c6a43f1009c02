"""The exercise checkers of every chapter pass a correct answer, fail known wrong answers with their hint, print one
"not done yet" line for the student edition's stub (and return, so Run All goes on), and leave torch's random state
as they found it; the cases are in ``tests/exercise_cases/chNN.py`` (chapter 08's in test_diffusion.py)."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_cases import CHAPTERS

from prodlab import data, edit, exercises, search
from prodlab.exercises.ch07 import shoes

CHECKERS = [(chapter, checker, cases) for chapter, by_checker in CHAPTERS.items()
            for checker, cases in by_checker.items()]
IDS = [f"ch{chapter}-{checker.__name__}" for chapter, checker, _ in CHECKERS]


def stub(*_args):
    raise NotImplementedError()  # nbgrader's default stub (ClearSolutions.code_stub)


@pytest.mark.parametrize("chapter, checker, cases", CHECKERS, ids=IDS)
def test_checker_passes_a_correct_answer(chapter, checker, cases, capsys):
    checker(cases[0])
    assert capsys.readouterr().out.strip().endswith(": correct")


@pytest.mark.parametrize("chapter, checker, cases", CHECKERS, ids=IDS)
def test_checker_fails_known_wrong_answers_with_their_hint(chapter, checker, cases, capsys):
    assert cases[1], f"{checker.__name__}: give at least one known wrong answer"
    checker(cases[0])
    parts = capsys.readouterr().out.count(": correct")  # a checker of several parts says so once per part
    for wrong, word in cases[1]:
        with pytest.raises(exercises.ExerciseFailed) as failure:
            checker(wrong)
        assert word in str(failure.value), f"{checker.__name__}: hint {str(failure.value)!r} lacks {word!r}"
        assert capsys.readouterr().out.count(": correct") < parts, f"{checker.__name__}: a wrong answer passed"


@pytest.mark.parametrize("chapter, checker, cases", CHECKERS, ids=IDS)
def test_the_stub_prints_one_not_done_line_and_returns(chapter, checker, cases, capsys):
    assert checker(stub) is None  # no exception: the student edition's Run All goes on
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, f"{checker.__name__}: one line for the stub, got {lines}"
    title, missing = lines[0].split(f": {exercises.NOT_DONE} - ")
    assert title and "`stub`" in missing and exercises.STUB_MESSAGE in missing
    assert exercises.outcomes()[-1] == (checker.__name__, exercises.NOT_DONE)


@pytest.mark.parametrize("chapter, checker, cases", CHECKERS, ids=IDS)
def test_checker_keeps_the_random_state(chapter, checker, cases):
    """A notebook's later cells draw the same numbers whether the exercise is solved, a stub, or checked twice."""
    for answer in (cases[0], stub):
        before = torch.get_rng_state()
        checker(answer)
        assert torch.equal(torch.get_rng_state(), before), f"{checker.__name__} changed the random state"


def test_every_checker_has_cases():
    tested = {checker.__name__ for _, checker, _ in CHECKERS}
    public = {name for name in dir(exercises) if name.startswith("check_")
              and getattr(exercises, name).__module__ != "prodlab.exercises.ch08"}  # chapter 08's: test_diffusion.py
    assert public <= tested, f"checkers without cases in tests/exercise_cases: {sorted(public - tested)}"


def test_a_crashing_answer_gets_one_line():
    with pytest.raises(exercises.ExerciseFailed, match="raised ZeroDivisionError"):
        exercises.check_gaussian_kl(lambda mu, logvar: 1 / 0)


def test_crossover_and_height_on_known_answers():
    assert edit.crossover([0.1, 0.2, 0.3], [3.0, 1.0, -1.0], [0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert edit.crossover([0.1, 0.2], [1.0, 1.0], [0.0, 0.0]) is None
    box = torch.zeros(1, *data.spec().shape)
    box[..., 4:14, 10:12] = 1.0  # 10 rows tall, 2 columns wide
    assert float(edit.height(box)[0]) == pytest.approx(math.sqrt(10**2 - 1), rel=1e-5)
    assert float(edit.width(box)[0]) == pytest.approx(math.sqrt(2**2 - 1), rel=1e-5)


def test_ap_on_a_list_worked_out_on_paper():
    relevant = torch.tensor([[True, False, True, False, False]])  # hits at ranks 1 and 3; R = 2
    assert float(search.precision_at_k(relevant, 3)[0]) == pytest.approx(2 / 3)
    assert float(search.average_precision_at_k(relevant, torch.tensor([2]), 5)[0]) == pytest.approx((1 + 2 / 3) / 2)


def test_synthetic_shoes_raise_their_heel():
    x = shoes([0, 4])
    assert x.shape == (2, *data.spec().shape) and x.amax() == 1.0
    assert x[0, :, 20:24, 16:26].all() and not x[1, :, 20:22, 16:23].any()  # the back left the ground
    assert x[1, :, 16:20, 16:26].all() and x[1, :, 20:24, 23:26].all()  # lifted 4 rows, on its heel
