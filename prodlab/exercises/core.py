"""The exercise checkers' common part: call the learner's function, compare with prodlab's reference, give a hint.

A checker prints ``"<exercise>: correct"`` or raises :class:`ExerciseFailed`, whose message is a hint: a specific one
when the answer equals a known mistake, a general one otherwise. nbgrader's empty stub (``raise
NotImplementedError()``) fails with :data:`STUB_MESSAGE`. Each chapter's checkers are in ``prodlab.exercises.chNN``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

STUB_MESSAGE = "not answered yet: replace `raise NotImplementedError()` with your code, run that cell, then this one"


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message is the hint."""


def call(title: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, turning the stub's ``NotImplementedError`` and any other error into a one-line hint."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseFailed(f"{title}: {STUB_MESSAGE}") from None
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


