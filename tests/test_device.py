"""Devices and threads (config.device, --device, config.threads): the choice, and a CUDA run close to the CPU's.

Nothing here compares with numbers recorded on another machine: floating point differs between CPU generations
(oneDNN and BLAS choose other kernels). Reproducibility within one machine is tests/test_loop.py's."""

from __future__ import annotations

import pytest
import torch

from prodlab import config, data, distributed, runs
from prodlab.cli import build_parser
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models
from prodlab.training import gan as gan_training
from prodlab.training import vae as vae_training

CPU = torch.device("cpu")


def test_device_choice(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.device() == config.device("auto") == config.device("CPU") == CPU
    with pytest.raises(ValueError, match="'cuda' is not available on this machine; use --device cpu"):
        config.device("cuda")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, mps, not 'tpu'"):
        config.device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.device() == torch.device("mps")  # auto takes the accelerator
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device("auto") == torch.device("cuda")  # CUDA first
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")  # what notebooks and --device set
    assert config.device() == CPU


def test_cli_device_flag_sets_the_default_device(monkeypatch):
    monkeypatch.setenv(config.DEVICE_ENV, "auto")  # restored after the test (use_device sets it)
    args = build_parser().parse_args(["train", "vae", "--device", "cpu"])
    assert args.device == "cpu" and config.use_device(args.device) == CPU
    assert config.device() == CPU
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "vae", "--device", "tpu"])


def test_one_process_has_no_process_group(monkeypatch):
    """``python -m prodlab`` without torchrun: one process, nothing distributed."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group(CPU) as world:
        assert world == distributed.World(0, 1) and world.is_main and not distributed.launched()
    assert distributed.rank_seed(7) == 7 and distributed.rank_seed(7, rank=1) != 7
    assert distributed.command_prefix() == "python -m prodlab"
    order = list(distributed.ShardSampler(10, 4, torch.Generator().manual_seed(0), seed=0, drop_last=False))
    assert [len(b) for b in order] == [4, 4, 2]
    assert torch.equal(torch.cat(order), torch.randperm(10, generator=torch.Generator().manual_seed(0)))


def test_threads_are_set_for_the_body_and_restored():
    before = torch.get_num_threads()
    with config.threads(2):
        assert torch.get_num_threads() == 2
        with config.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with config.threads(None):
        assert torch.get_num_threads() == before  # None: as torch chose (all cores)
    with pytest.raises(ValueError, match="threads must be at least 1"), config.threads(0):
        pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible on this machine)")
def test_recipes_train_on_cuda_and_come_back_to_the_cpu(tmp_path):
    """The same code on a GPU: finite losses, models returned on the CPU, close to (not equal to) the CPU run."""
    cuda = config.device("cuda")
    recipe = gan_training.GANRecipe(epochs=1, batch_size=16, train_limit=96, ema_decay=0.5, bn_batches=2)
    cfg = gan_models.GANConfig(data.spec(), latent_dim=8, width=4)
    gpu = gan_training.train_gan(cfg, recipe, runs.Run("gan-cuda", tmp_path), progress=False, device=cuda)
    cpu = gan_training.train_gan(cfg, recipe, runs.Run("gan-cpu", tmp_path), progress=False, device=CPU)
    assert next(gpu.gan.parameters()).device == CPU and next(gpu.ema.parameters()).device == CPU
    assert gpu.history[-1]["loss_d"] == pytest.approx(cpu.history[-1]["loss_d"], rel=0.1)  # same noise and data
    vae_recipe = vae_training.VAERecipe(epochs=1, train_limit=512, eval_images=100)
    model, history = vae_training.train_vae(vae_models.VAEConfig(data.spec()), vae_recipe, runs.Run("vae", tmp_path),
                                            progress=False, device=cuda)
    assert next(model.parameters()).device == CPU and history[-1]["loss"] < 600
