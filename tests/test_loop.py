"""The one training loop (prodlab.training.loop), for every family: reproducible within one machine and one run.

The same seed twice gives the same bits; a run stopped by Ctrl-C in its second epoch and resumed gives the bits of
the uninterrupted run; another seed gives other weights. Nothing here compares with numbers recorded on another
machine: floating point differs between CPU generations, so those are compared elsewhere only within a tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from prodlab import config, data, runs
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models
from prodlab.models.classifier import ClassifierConfig
from prodlab.training import classifier as classifier_training
from prodlab.training import diffusion as diffusion_training
from prodlab.training import gan as gan_training
from prodlab.training import vae as vae_training


@dataclass(frozen=True)
class Case:
    """One family: how to train a tiny model of it, and the module-level step function the loop calls."""

    train: Callable[[runs.Run, int, bool], tuple[dict[str, torch.Tensor], Any]]
    module: Any
    step: str


def _weights(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v.detach().clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()}


def _gan(run: runs.Run, seed: int, resume: bool) -> tuple[dict[str, torch.Tensor], Any]:
    recipe = gan_training.GANRecipe(epochs=2, batch_size=16, train_limit=64, ema_decay=0.5, bn_batches=1)
    out = gan_training.train_gan(gan_models.GANConfig(data.spec(), latent_dim=8, width=4, conditional=True), recipe,
                                 run, seed, progress=False, resume=resume, threads=1)
    history = [{k: v for k, v in h.items() if "seconds" not in k} for h in out.history]
    return _weights(out.gan, out.ema), (history, sorted(out.snapshots))


def _vae(run: runs.Run, seed: int, resume: bool) -> tuple[dict[str, torch.Tensor], Any]:
    recipe = vae_training.VAERecipe(epochs=2, batch_size=16, train_limit=64, eval_images=32)
    cfg = vae_models.VAEConfig(data.spec(), latent_dim=4, channels=(4, 8), hidden=16)
    model, history = vae_training.train_vae(cfg, recipe, run, seed, progress=False, resume=resume, threads=1)
    return _weights(model), [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


def _classifier(run: runs.Run, seed: int, resume: bool) -> tuple[dict[str, torch.Tensor], Any]:
    recipe = classifier_training.ClassifierRecipe(epochs=2, batch_size=16, train_limit=64)
    cfg = ClassifierConfig(data.spec(), channels=(4, 8, 8), hidden=16)
    model, history = classifier_training.train_classifier(cfg, recipe, run, seed, progress=False, resume=resume,
                                                          threads=1)
    return _weights(model), [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


def _diffusion(run: runs.Run, seed: int, resume: bool) -> tuple[dict[str, torch.Tensor], Any]:
    recipe = diffusion_training.DiffusionRecipe(epochs=2, batch_size=16, train_limit=64, width=8, warmup_steps=2)
    model, history = diffusion_training.train_image_model(recipe, run, seed, progress=False, resume=resume, threads=1)
    return _weights(model), [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


CASES = {
    "gan": Case(_gan, gan_training, "gan_step"),
    "vae": Case(_vae, vae_training, "vae_step"),
    "classifier": Case(_classifier, classifier_training, "classifier_step"),
    "diffusion": Case(_diffusion, diffusion_training, "diffusion_step"),
}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", list(CASES))
def test_same_seed_same_bits_other_seed_other_weights(family, tmp_path):
    case = CASES[family]
    first, history = case.train(runs.Run("a", tmp_path), 3, False)
    again, history_again = case.train(runs.Run("b", tmp_path), 3, False)
    other, _ = case.train(runs.Run("c", tmp_path), 4, False)
    assert _equal(first, again) and history == history_again
    assert not _equal(first, other)


@pytest.mark.parametrize("family", list(CASES))
def test_a_resumed_run_equals_the_uninterrupted_one(family, tmp_path, monkeypatch):
    """Ctrl-C in the second epoch keeps the first on disk; --resume continues to the same bits as one run."""
    case = CASES[family]
    straight, history = case.train(runs.Run("straight", tmp_path), 5, False)
    real_step, calls = getattr(case.module, case.step), {"n": 0}

    def stopped_in_epoch_2(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps per epoch: epoch 1 is saved, epoch 2 is half done
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    run = runs.Run("stopped", tmp_path)
    monkeypatch.setattr(case.module, case.step, stopped_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        case.train(run, 5, False)
    assert run.last_epoch() == 1
    monkeypatch.setattr(case.module, case.step, real_step)
    resumed, resumed_history = case.train(run, 5, True)
    assert _equal(straight, resumed) and history == resumed_history


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    real_step, calls = diffusion_training.diffusion_step, {"n": 0}

    def nan_in_epoch_2(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls["n"] += 1
        row = real_step(*args, **kwargs)
        return {**row, "loss": float("nan")} if calls["n"] == 6 else row

    monkeypatch.setattr(diffusion_training, "diffusion_step", nan_in_epoch_2)
    run = runs.Run("nan", tmp_path)
    with pytest.raises(runs.DivergenceError, match="diverged at step 6: loss = nan.*last good state"):
        _diffusion(run, 0, False)
    assert run.last_epoch() == 1


def test_a_model_that_does_not_fit_the_data_set_is_refused(tmp_path):
    spec = data.spec()
    wrong = type(spec)(3, spec.height, spec.width, spec.class_names, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="made for images 3 x .* but data set 'fashion-mnist' holds 1 x"):
        gan_training.train_gan(gan_models.GANConfig(wrong), gan_training.GANRecipe(epochs=1),
                               runs.Run("wrong", tmp_path), progress=False)


def test_training_uses_all_cores_unless_told(tmp_path, monkeypatch):
    seen = []
    real_step = vae_training.vae_step
    monkeypatch.setattr(vae_training, "vae_step", lambda *a, **k: (seen.append(torch.get_num_threads()),
                                                                    real_step(*a, **k))[1])
    before = torch.get_num_threads()
    with config.threads(2):
        _vae(runs.Run("two", tmp_path), 0, False)  # _vae asks for one thread
        assert set(seen) == {1} and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
