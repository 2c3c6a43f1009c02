"""Resumable run state and divergence detection (prodlab.runs)."""

import math

import pytest
import torch
from torch import nn

from prodlab import runs


def _objects(seed: int):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt, torch.Generator().manual_seed(seed)


def test_save_restore_round_trip(tmp_path):
    run = runs.Run("toy", tmp_path)
    model, opt, gen = _objects(0)
    run.save(3, 120, {"m": model}, {"o": opt}, gen, [{"step": 120, "loss": 0.5}])
    expected_next = torch.rand(2, generator=gen)
    model2, opt2, gen2 = _objects(1)
    epoch, step, history = run.restore({"m": model2}, {"o": opt2}, gen2)
    assert (epoch, step, history) == (3, 120, [{"step": 120, "loss": 0.5}])
    assert torch.equal(model.weight, model2.weight)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(2, generator=gen2), expected_next)


def test_restore_without_state_is_a_fresh_start(tmp_path):
    model, opt, gen = _objects(0)
    assert runs.Run("new", tmp_path).restore({"m": model}, {"o": opt}, gen) == (0, 0, [])


def test_restore_from_a_damaged_state_is_a_clear_error(tmp_path):
    run = runs.Run("bad", tmp_path)
    run.path.mkdir(parents=True)
    run.state_path.write_bytes(b"garbage")
    model, opt, gen = _objects(0)
    with pytest.raises(runs.RunError, match="cannot resume"):
        run.restore({"m": model}, {"o": opt}, gen)


def test_monitor_stops_on_nan_and_names_the_state(tmp_path):
    run = runs.Run("nan", tmp_path)
    model, opt, gen = _objects(0)
    run.save(1, 10, {"m": model}, {"o": opt}, gen, [])
    monitor = runs.DivergenceMonitor(run)
    monitor.check(11, {"loss_d": 0.7})
    with pytest.raises(runs.DivergenceError, match=r"step 12: loss_d = nan.*state\.pt"):
        monitor.check(12, {"loss_d": math.nan})


def test_monitor_stops_when_discriminator_is_pinned(tmp_path):
    monitor = runs.DivergenceMonitor(runs.Run("pinned", tmp_path), patience=5)
    for step in range(4):
        monitor.check(step, {"l": 1.0}, d_real=0.999, d_fake=0.001)
    monitor.check(4, {"l": 1.0}, d_real=0.8, d_fake=0.3)  # a healthy step resets the count
    for step in range(5, 9):
        monitor.check(step, {"l": 1.0}, d_real=1.0, d_fake=0.0)
    with pytest.raises(runs.DivergenceError, match="pinned for 5 steps.*no epoch had finished"):
        monitor.check(9, {"l": 1.0}, d_real=1.0, d_fake=0.0)
