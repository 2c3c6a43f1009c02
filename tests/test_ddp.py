"""Data parallelism (prodlab.distributed): ``python -m prodlab train`` as two CPU ranks, the way torchrun runs it.

Each rank is a spawned process with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT on a free loopback
port), so ``cmd_train`` joins a gloo process group exactly as under ``torchrun --standalone --nproc-per-node 2``.
A tiny VAE is registered as a model so that the whole command (train, save, resume) runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import free_port
from safetensors.torch import load_file

from prodlab import config, data, files, runs
from prodlab.cli import main
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models
from prodlab.training import gan as gan_training
from prodlab.training import registry
from prodlab.training import vae as vae_training
from prodlab.training.base import Trained

TINY_VAE = vae_models.VAEConfig(data.spec(), latent_dim=4, channels=(4, 8), hidden=16)
TINY_RECIPE = vae_training.VAERecipe(epochs=2, batch_size=32, train_limit=256, eval_images=64)  # 8 steps an epoch
SMALL_GAN = gan_models.GANConfig(data.spec(), latent_dim=8, width=4)
GAN_RECIPE = gan_training.GANRecipe(epochs=2, batch_size=16, train_limit=96, ema_decay=0.5, bn_batches=2,
                                    n_snapshot=4)
STOP_AT = 11  # Ctrl-C in the second epoch
LIMIT_S = 300  # a hung collective fails the test instead of hanging it
PARAMS_SEEN: dict[str, str] = {}
pytestmark = [pytest.mark.integration,  # processes that train together: make test-integration
              pytest.mark.filterwarnings("ignore::prodlab.training.vae.PosteriorCollapseWarning")]  # 16 steps


def _params_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for _, p in sorted(model.named_parameters()):
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


def _train_tiny(recipe, _baseline, ctx):
    model, history = vae_training.train_vae(ctx.config, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume)
    PARAMS_SEEN[ctx.run.name] = _params_hash(model)
    return Trained(model, {"loss": history[-1]["loss"]}, {"history": history})


def _register(runs_dir: Path) -> None:
    """The tiny VAE as model ``tinyvae`` with a recipe (in this process), and the runs folder."""
    config.RUNS_DIR = runs_dir
    registry.ENTRIES["tinyvae"] = registry.Entry("tinyvae", "vae", lambda image: TINY_VAE, TINY_RECIPE,
                                                 TINY_RECIPE, _train_tiny)


def _train(out: Path, *extra: str) -> int:
    return main(["train", "tinyvae", "--device", "cpu", "--out", str(out), *extra])


def _rank(rank: int, port: int, tmp: Path) -> None:
    """One rank: a straight run, then an interrupted run and its resume; a GAN through DataParallelGAN."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    _register(tmp / "runs")
    codes = {"straight": _train(tmp / "straight")}
    real_check = runs.DivergenceMonitor.check

    def interrupt(self, step, *args, **kwargs):
        if step == STOP_AT:
            raise KeyboardInterrupt
        return real_check(self, step, *args, **kwargs)

    config.RUNS_DIR = tmp / "runs-interrupted"
    runs.DivergenceMonitor.check = interrupt
    codes["interrupted"] = _train(tmp / "resumed")
    runs.DivergenceMonitor.check = real_check
    epoch_saved = runs.Run("tinyvae", config.RUNS_DIR).last_epoch()
    codes["resumed"] = _train(tmp / "resumed", "--resume")
    gan = gan_training.train_gan(SMALL_GAN, GAN_RECIPE, runs.Run("gan", tmp / "runs"), seed=3, progress=False)
    files.write_json(tmp / f"rank{rank}.json", {
        "codes": codes, "epoch_saved": epoch_saved, "params": PARAMS_SEEN,
        "gan_params": _params_hash(gan.gan), "gan_loss_d": [h["loss_d"] for h in gan.history]})


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Run :func:`_rank` in two spawned processes; return their folder and each rank's report."""
    tmp = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(_rank, args=(free_port(), tmp), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + LIMIT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"two-rank training did not finish in {LIMIT_S} s")
    return tmp, [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_two_ranks_finish_and_rank_0_writes_one_checkpoint(two_ranks):
    tmp, reports = two_ranks
    assert [r["codes"] for r in reports] == [{"straight": 0, "interrupted": 130, "resumed": 0}] * 2
    assert sorted(p.name for p in (tmp / "straight").iterdir()) == ["tinyvae.json", "tinyvae.safetensors"]
    assert sorted(p.name for p in (tmp / "runs" / "tinyvae").iterdir()) == ["state.pt"]  # no leftovers
    meta = json.loads((tmp / "straight" / "tinyvae.json").read_text())
    assert meta["command"].startswith("torchrun --standalone --nproc-per-node 2 -m prodlab train tinyvae")
    state = torch.load(tmp / "runs" / "tinyvae" / "state.pt", weights_only=True)
    assert len(state["ranks"]) == 2 and not torch.equal(state["ranks"][0]["generator"], state["ranks"][1]["generator"])


def test_ranks_hold_the_same_weights(two_ranks):
    """DDP averaged every gradient: both ranks end with bit-identical parameters (the VAE, and G and D)."""
    _, (r0, r1) = two_ranks
    assert r0["params"]["tinyvae"] == r1["params"]["tinyvae"]
    assert r0["gan_params"] == r1["gan_params"] and r0["gan_loss_d"] == r1["gan_loss_d"]  # histories: rank means


def test_an_interrupted_two_rank_run_resumes_to_the_same_result(two_ranks):
    """Ctrl-C in epoch 2; --resume re-trains only epoch 2 and ends bit for bit where the straight run ended."""
    tmp, reports = two_ranks
    assert [r["epoch_saved"] for r in reports] == [1, 1]
    straight = load_file(str(tmp / "straight" / "tinyvae.safetensors"))
    resumed = load_file(str(tmp / "resumed" / "tinyvae.safetensors"))
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    a, b = (json.loads((tmp / d / "tinyvae.json").read_text())["history"] for d in ("straight", "resumed"))
    assert [h["loss"] for h in a] == [h["loss"] for h in b]


def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks, tmp_path, monkeypatch):
    """Same global batch (32 = 2 x 16), same data order per step, same initial weights; the ranks draw their own
    eps, so the runs are equal in distribution, not bit for bit. Tolerance: the final loss within 2 %, which is
    about the difference between two seeds of the one-process run (measured: README, "More than one machine")."""
    tmp, _ = two_ranks
    monkeypatch.setitem(registry.ENTRIES, "tinyvae", None)
    monkeypatch.setattr(config, "RUNS_DIR", config.RUNS_DIR)
    _register(tmp_path / "runs")
    assert _train(tmp_path) == 0
    one = json.loads((tmp_path / "tinyvae.json").read_text())["history"]
    two = json.loads((tmp / "straight" / "tinyvae.json").read_text())["history"]
    assert len(one) == len(two) == 2
    assert two[-1]["loss"] == pytest.approx(one[-1]["loss"], rel=0.02)
    assert two[-1]["loss"] < two[0]["loss"]  # and it learned


def test_torchrun_trains_the_diffusion_model_on_two_processes_and_writes_one_checkpoint(tmp_path):
    """The README's command, as a user types it: rank 0 alone measures and writes; the U-Net trained in DDP."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "PRODLAB_QUICK": "1", config.RUNS_ENV: str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "prodlab", "train", "diffusion",
                           "--set", "epochs=1", "--out", str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["diffusion.json", "diffusion.safetensors"]
    meta = json.loads((tmp_path / "out" / "diffusion.json").read_text())
    assert meta["command"].startswith("torchrun --standalone --nproc-per-node 2 -m prodlab train diffusion")
    assert meta["metrics"]["fid"] > 0 and len(meta["history"]) >= 1
    state = torch.load(tmp_path / "runs" / "diffusion-quick" / "state.pt", weights_only=True)
    assert len(state["ranks"]) == 2  # two processes trained it
    assert done.stdout.count("Wrote ") == 1  # rank 0 alone wrote and printed
