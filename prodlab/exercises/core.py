"""The exercise checkers' common part: call the learner's function, compare with prodlab's reference, give a hint.

A checker prints ``"<exercise>: correct"`` or raises :class:`ExerciseFailed`, whose message is a hint: a specific one
when the answer equals a known mistake, a general one otherwise. nbgrader's empty stub (``raise
NotImplementedError()``) is not a wrong answer: :func:`call` raises :class:`NotDone`, and :func:`checker` (which
``prodlab.exercises`` wraps around every ``check_*``) turns it into one printed line,
``"<exercise>: not done yet - <what is missing>"``, and returns, so that Run All on the student edition goes on.
A checker also leaves PyTorch's random state as it found it, so a notebook's later cells draw the same numbers
whether an exercise is solved, still a stub, or checked twice (``prodlab.student``'s checked edition).
Each chapter's checkers are in ``prodlab.exercises.chNN``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

NOT_DONE = "not done yet"
STUB_MESSAGE = "replace `raise NotImplementedError()` with your code, run that cell, then this one"


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message is the hint."""


class NotDone(ExerciseFailed):
    """The learner's function is still the stub: not a wrong answer, the exercise is not done yet."""


_outcomes: list[tuple[str, str]] = []  # (checker, NOT_DONE or "correct") of every checker run in this process


def outcomes() -> list[tuple[str, str]]:
    """What each checker run so far ended with: ``(name, "not done yet")`` or ``(name, "correct")``, in order."""
    return list(_outcomes)


def checker(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """``check`` that prints one "not done yet" line for the stub instead of raising, and keeps the random state."""

    @functools.wraps(check)
    def run(fn: Any) -> None:
        with torch.random.fork_rng(devices=[]):  # the checker's seeds and draws stay inside it
            try:
                check(fn)
            except NotDone as stub:
                print(stub)
                _outcomes.append((check.__name__, NOT_DONE))
                return
        _outcomes.append((check.__name__, "correct"))

    return run


def call(title: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; the stub's ``NotImplementedError`` raises :class:`NotDone`, any other error a one-line hint."""
    try:
        return fn(*args)
    except NotImplementedError:
        name = getattr(fn, "__name__", "your function")
        raise NotDone(f"{title}: {NOT_DONE} - `{name}` is still the stub: {STUB_MESSAGE}") from None
    except Exception as err:  # the learner's code may fail in any way: say how, in one line
        raise ExerciseFailed(f"{title}: your function raised {type(err).__name__}: {err}") from err


def close(got: Tensor, want: Tensor, rtol: float, atol: float) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=rtol, atol=atol))


def verdict(title: str, got: Any, want: Tensor, mistakes: dict[str, Tensor], hint: str,
            rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Print "correct" when ``got`` equals ``want``; otherwise raise with the hint of the matching mistake."""
    try:
        got = torch.as_tensor(got).detach().double()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseFailed(f"{title}: expected a tensor, got {type(got).__name__} ({err})") from None
    want = want.detach().double()
    if close(got, want, rtol, atol):
        print(f"{title}: correct")
        return
    if got.numel() and not torch.isfinite(got).all():
        raise ExerciseFailed(f"{title}: your result has inf or nan. {hint}")
    for mistake_hint, wrong in mistakes.items():
        if close(got, wrong.detach().double(), rtol, atol):
            raise ExerciseFailed(f"{title}: {mistake_hint}")
    if got.shape != want.shape:
        raise ExerciseFailed(f"{title}: shape {tuple(got.shape)}, expected {tuple(want.shape)}. {hint}")
    error = (got - want).abs().max().item()
    raise ExerciseFailed(f"{title}: wrong values (largest error {error:.3g}). {hint}")
