"""Chapter 06's exercise checkers pass the reference answer, fail known wrong answers with their hint, fail the stub."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prodlab import exercises, search


def stub(*_args):
    raise NotImplementedError()  # nbgrader's default stub


def precision_at_k(relevant, k):
    return relevant[:, :k].float().mean(1)


def average_precision(relevant, n_relevant, k):
    rel = relevant[:, :k].float()
    precision = rel.cumsum(1) / torch.arange(1, k + 1)
    return (precision * rel).sum(1) / n_relevant.clamp(max=k).float()


def cosine_top_k(queries, vectors, k):
    return (F.normalize(queries, dim=1) @ F.normalize(vectors, dim=1).T).topk(k, dim=1)


CASES = {
    exercises.check_precision_at_k: (
        precision_at_k,
        [(lambda rel, k: rel[:, :k].float().sum(1), "divide by k"),
         (lambda rel, k: rel.float().mean(1), "first k"),
         (lambda rel, k: rel[:, :k].float().mean(), "one precision per query")],
    ),
    exercises.check_average_precision: (
        average_precision,
        [(lambda rel, n, k: (rel.float().cumsum(1) / torch.arange(1, k + 1)).mean(1), "multiply by rel_i"),
         (lambda rel, n, k: average_precision(rel, torch.full_like(n, k), k), "divides by k"),
         (lambda rel, n, k: average_precision(rel, n, k) * n.clamp(max=k) / n, "divides by R")],
    ),
    exercises.check_cosine_top_k: (
        cosine_top_k,
        [(lambda q, v, k: (q @ v.T).topk(k, dim=1), "normalise"),
         (lambda q, v, k: cosine_top_k(q, v, k)[1], "pair"),
         (lambda q, v, k: (F.normalize(q, dim=1) @ F.normalize(v, dim=1).T).topk(k, dim=1, largest=False),
          "least similar")],
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


def test_ap_on_a_list_worked_out_on_paper():
    relevant = torch.tensor([[True, False, True, False, False]])  # hits at ranks 1 and 3; R = 2
    assert float(search.precision_at_k(relevant, 3)[0]) == pytest.approx(2 / 3)
    assert float(search.average_precision_at_k(relevant, torch.tensor([2]), 5)[0]) == pytest.approx((1 + 2 / 3) / 2)
