"""Do the editing winners hold in both rulers' feature spaces (issue 27, notebook 05)? The ranking must pick the
best method of each measure with the right sign, read leads inside the noise as such, and measure distances in the
rulers' own spaces."""

from __future__ import annotations

import pytest
import torch

from prodlab import edit, ruler
from prodlab.edit import rank


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return edit.test_images(24)


def test_feature_distance_is_zero_for_the_original_and_near_one_for_another_product(x):
    r = ruler.load()
    assert torch.allclose(rank.feature_distance(r, x, x), torch.zeros(len(x)), atol=1e-4)
    other = rank.feature_distance(r, x.roll(5, 0), x)
    assert 0.6 < float(other.mean()) < 1.6  # by construction the mean distance of each to the next is 1
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert 0 < float(rank.feature_distance(r, noisy, x).mean()) < float(other.mean())


def test_the_winner_follows_each_measures_direction_and_the_noise():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(300, generator=g)
    clear = {"a": base + 1.0, "b": base, "c": base - 1.0}
    up, down = rank.winner(clear, higher_better=True), rank.winner(clear, higher_better=False)
    assert (up["best"], up["runner_up"], down["best"], down["runner_up"]) == ("a", "b", "c", "b")
    assert up["lead"] == pytest.approx(1.0) and down["lead"] == pytest.approx(1.0) and up["separated"]
    tie = {"a": base + 0.01 * torch.randn(300, generator=g), "b": base + 0.01 * torch.randn(300, generator=g)}
    row = rank.winner(tie, higher_better=True)
    assert not row["separated"] and row["interval"][0] < 0 < row["interval"][1]


def test_an_untouched_output_wins_every_measure_and_the_table_says_so(x):
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    outputs = {"exact": x.clone(), "noisy": noisy}
    psnr = {m: edit.psnr(out.clamp(0, 1) * 0.999 + 0.0005, x) for m, out in outputs.items()}  # finite PSNR
    row = rank.rank_setting(outputs, psnr, x, rank.rulers())
    assert row["agree"] and all(row[m]["best"] == "exact" and row[m]["separated"] for m in rank.MEASURES)
    table = rank.markdown({"toy": row})
    assert table.count("exact") == 3 and "| yes |" in table and "**" in table

