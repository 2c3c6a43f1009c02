"""Chapter 02's GAN rankings in both rulers' spaces (issue 27): the bench must re-train exactly the runs behind the
ablation table, measure every generator of a run in both spaces with intervals, and read each ranking's verdict
the right way round."""

from __future__ import annotations

import pytest

from prodlab import config
from prodlab.models.gan import GANConfig
from prodlab.training import gan_measure, gan_rulers


def test_the_planned_runs_are_the_distinct_runs_of_the_ablation_rows():
    rows, plans = gan_measure.gan_ablation(), gan_rulers.planned_runs()
    assert 1 < len(plans) < len(rows)  # every run yields several generators (raw, EMA...)
    assert sum(len(p["recorded_fid"]) for p in plans) == len(rows)
    for row in rows:
        plan = next(p for p in plans if p["recipe"] == row["recipe"] and p["model"] == row["model"]
                    and p["config"] == row["config"])
        assert plan["recorded_fid"][row["variant"]] == row["fid"]


def test_a_recorded_config_of_either_format_gives_the_gan_it_describes():
    old = gan_rulers.gan_config({"latent_dim": 64, "width": 32, "n_classes": 10, "spectral_norm": False})
    new = gan_rulers.gan_config({"latent_dim": 8, "width": 16, "conditional": False, "image": {"ignored": 1}})
    assert isinstance(old, GANConfig) and old.conditional and old.width == 32
    assert not new.conditional and (new.latent_dim, new.width) == (8, 16)


@pytest.mark.integration
def test_one_run_is_trained_again_and_measured_in_both_spaces(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    plan = min(gan_rulers.planned_runs(), key=lambda p: p["recipe"]["epochs"])
    rows = gan_rulers.measure_run(plan, n=96, replicates=5)
    assert {r["variant"] for r in rows} == set(plan["recorded_fid"])
    for r in rows:
        for space in (r, r["second_ruler"]):
            low, high = space["intervals"]["fid"]
            assert low <= space["fid"] <= high and space["fid"] > 0
        assert r["recorded_fid"] == plan["recorded_fid"][r["variant"]] and r["steps"] > 0
        assert r["recipe"] == plan["recipe"]  # the rows are found by the recorded recipe, quick mode or not


def _row(model, variant, batch, fid, interval, second_fid, second_interval):
    return {"model": model, "variant": variant, "recipe": {"batch_size": batch}, "fid": fid,
            "intervals": {"fid": interval}, "second_ruler": {"fid": second_fid, "intervals": {"fid": second_interval}}}


def test_a_ranking_holds_in_a_space_only_where_its_fid_is_lower_and_apart_where_the_intervals_are():
    rows = [_row("dcgan", "ema", 16, 9.0, [8.5, 9.5], 0.50, [0.40, 0.60]),
            _row("dcgan", "ema", 64, 12.0, [11.5, 12.5], 0.45, [0.35, 0.55])]
    better, worse = gan_rulers.pick(rows, "dcgan", "ema", batch_size=16), gan_rulers.pick(rows, "dcgan", "ema",
                                                                                          batch_size=64)
    verdict = gan_rulers.holds(better, worse)
    assert verdict["classifier"] == {"fid": [9.0, 12.0], "lower": True, "separated": True}
    assert verdict["encoder"] == {"fid": [0.50, 0.45], "lower": False, "separated": False}
    with pytest.raises(KeyError):
        gan_rulers.pick(rows, "dcgan", "raw")


def test_every_ranking_of_chapter_02_is_found_in_the_shipped_bench():
    from prodlab import files
    from prodlab.chapters import ch02_gan

    bench = files.read_json(gan_rulers.BENCH_FILE)
    assert not bench["quick_mode"] and bench["n"] == 10_000
    assert len(bench["rows"]) == sum(len(p["recorded_fid"]) for p in gan_rulers.planned_runs())
    claims = ch02_gan.ranking_claims(bench["rows"])
    table = gan_rulers.verdict_markdown(claims)
    assert table.count("\n") == len(claims) + 1 and all(claim in table for claim, _, _ in claims)
    for _, better, worse in claims:
        assert better is not worse and better["model"] == worse["model"]
