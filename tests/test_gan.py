"""GANs of notebook 02 (prodlab.models.gan and the GAN section of prodlab.train)."""

from __future__ import annotations

import math

import pytest
import torch

from prodlab import checkpoints, data, ruler, runs
from prodlab.models import gan as gan_models
from prodlab.training import gan as gan_training
from prodlab.training import gan_measure, registry

SPEC = data.spec()
SMALL = gan_models.GANConfig(SPEC, latent_dim=8, width=4)
TINY_RECIPE = gan_training.GANRecipe(epochs=2, batch_size=16, train_limit=96, ema_decay=0.5, bn_batches=2, n_snapshot=4)


def test_shapes_and_ranges():
    gan = gan_models.GAN(SMALL)
    z = gan.noise(5, torch.Generator().manual_seed(0))
    fake = gan.generator(z)
    assert z.shape == (5, 8) and fake.shape == (5, *SPEC.shape)
    assert fake.min() >= -1 and fake.max() <= 1 and fake.min() < 0 < fake.max()  # tanh: [-1, 1]
    assert gan.discriminator(fake).shape == (5,)
    assert gan.discriminator.features(fake).shape == (5, 4 * 4 * 7 * 7)
    images = gan.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, *SPEC.shape) and images.min() >= 0 and images.max() <= 1


def test_dcgan_initialisation():
    gan = gan_models.GAN(gan_models.GANConfig(SPEC))
    conv = gan.discriminator.body[2].weight
    assert abs(float(conv.detach().mean())) < 0.002 and float(conv.detach().std()) == pytest.approx(0.02, rel=0.05)
    bn = gan.generator.upsample[1]
    assert float(bn.weight.detach().mean()) == pytest.approx(1.0, abs=0.01) and torch.all(bn.bias == 0)
    assert torch.all(gan.discriminator.head.bias == 0)


def test_conditional_sampling_follows_the_labels():
    gan = gan_models.GAN(gan_models.GANConfig(SPEC, latent_dim=8, width=4, conditional=True))
    z = gan.noise(3, torch.Generator().manual_seed(0))
    a = gan.render(z, torch.tensor([7, 7, 7]))
    b = gan.render(z, torch.tensor([0, 7, 1]))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])  # same z and label -> same image
    x = gan.generator(z, torch.tensor([1, 2, 3]))
    assert gan.discriminator(x, torch.tensor([1, 2, 3])).shape == (3,)
    with pytest.raises(ValueError, match="needs class labels"):
        gan.generator(z)
    with pytest.raises(ValueError, match="3 samples"):
        gan.sample(3, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unconditional"):
        gan_models.GAN(SMALL).sample(2, labels=torch.tensor([0, 1]))


def test_spectral_norm_discriminator_has_unit_spectral_norm():
    d = gan_models.Discriminator(gan_models.GANConfig(SPEC, latent_dim=8, width=4, spectral_norm=True)).train()
    for _ in range(30):  # power iterations run in training-mode forward passes
        d(torch.randn(8, *SPEC.shape))
    d.eval()
    weight = d.head.weight  # the normalised weight
    assert float(torch.linalg.matrix_norm(weight.detach(), ord=2)) == pytest.approx(1.0, abs=0.02)


def test_ema_update_and_batchnorm_recompute():
    torch.manual_seed(0)
    g, ema = gan_models.Generator(SMALL), gan_models.Generator(SMALL)
    before = [p.clone() for p in ema.parameters()]
    gan_models.ema_update(ema, g, decay=0.9)
    for p_ema, p_old, p in zip(ema.parameters(), before, g.parameters(), strict=True):
        assert torch.allclose(p_ema, 0.9 * p_old + 0.1 * p)
    # Recomputed running statistics are the exact average of the batch statistics over the noise batches.
    bn = ema.project[2]
    seen = []
    handle = bn.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].mean(dim=(0, 2, 3))))
    gan_models.recompute_batchnorm(ema, n_batches=3, batch_size=32, generator=torch.Generator().manual_seed(1))
    handle.remove()
    assert len(seen) == 3 and torch.allclose(bn.running_mean, torch.stack(seen).mean(0), atol=1e-6)
    assert bn.momentum == 0.1  # restored
    # With stale statistics (those of other weights) the eval-mode output differs from the batch-statistics one.
    z = torch.randn(256, SMALL.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch_stats = ema.train()(z)
        recomputed = ema.eval()(z)
        ema.project[2].reset_running_stats()
        stale = ema.eval()(z)
    assert (recomputed - batch_stats).abs().mean() < 0.5 * (stale - batch_stats).abs().mean()


def test_truncated_noise_stays_inside_and_the_plain_noise_is_unchanged():
    z = gan_models.truncated_noise(2000, 8, 1.0, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 1.0 and 0.5 < z.std() < 0.58  # N(0, 1) truncated to [-1, 1] has std 0.54
    assert (z.abs() > 0.99).float().mean() < 0.01  # redrawn inside, not piled up at the edges as clipping would
    gan = gan_models.GAN(SMALL)
    plain = gan.noise(5, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(5, 8, generator=torch.Generator().manual_seed(0)))  # gan_step's noise
    a = gan.sample(4, torch.Generator().manual_seed(1), truncation=0.5)
    b = gan.sample(4, torch.Generator().manual_seed(1), truncation=0.5)
    assert torch.equal(a, b) and a.shape == (4, *SPEC.shape) and not torch.equal(a, gan.sample(4, torch.Generator()
                                                                                              .manual_seed(1)))
    with pytest.raises(ValueError, match="threshold"):
        gan_models.truncated_normal(torch.rand(3), 0.0)


def test_snapshot_schedule():
    assert [s for s in range(1, 3000) if gan_training.is_snapshot_step(s)] == [10, 20, 50, 100, 200, 500, 1000, 2000]


def test_training_is_interrupted_and_resumed_without_starting_over(tmp_path, monkeypatch):
    straight = gan_training.train_gan(SMALL, TINY_RECIPE, runs.Run("straight", tmp_path), seed=3, progress=False)
    assert len(straight.history) == 12 and list(straight.snapshots) == [0, 10, 12]

    real_check = runs.DivergenceMonitor.check
    calls, interrupted = [], []

    def interrupt(self, step, *args, **kwargs):
        calls.append(step)
        if step == 9 and not interrupted:  # Ctrl-C once, in the second epoch (6 steps per epoch)
            interrupted.append(step)
            raise KeyboardInterrupt
        return real_check(self, step, *args, **kwargs)

    monkeypatch.setattr(runs.DivergenceMonitor, "check", interrupt)
    run = runs.Run("interrupted", tmp_path)
    with pytest.raises(KeyboardInterrupt):
        gan_training.train_gan(SMALL, TINY_RECIPE, run, seed=3, progress=False)
    calls.clear()
    resumed = gan_training.train_gan(SMALL, TINY_RECIPE, run, seed=3, progress=False, resume=True)
    assert calls == list(range(7, 13))  # only the lost epoch was trained again
    assert [h["step"] for h in resumed.history] == list(range(1, 13))
    for a, b in zip(resumed.history, straight.history, strict=True):  # the same run, bit for bit
        assert (a["loss_d"], a["loss_g"]) == (b["loss_d"], b["loss_g"])
    assert torch.equal(resumed.snapshots[12], straight.snapshots[12])
    assert torch.equal(resumed.ema.project[0].weight, straight.ema.project[0].weight)


def test_divergence_stops_cleanly_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    d_loss, g_loss = gan_training.GAN_LOSSES["bce"]
    steps = []

    def poisoned(real_logits, fake_logits):
        steps.append(1)
        loss = d_loss(real_logits, fake_logits)
        return loss * math.nan if len(steps) == 8 else loss  # NaN in the second epoch

    monkeypatch.setitem(gan_training.GAN_LOSSES, "bce", (poisoned, g_loss))
    run = runs.Run("diverged", tmp_path)
    with pytest.raises(runs.DivergenceError, match=r"step 8: L_D = nan.*last good state is .*state\.pt"):
        gan_training.train_gan(SMALL, TINY_RECIPE, run, seed=0, progress=False)
    gan = gan_models.GAN(SMALL)
    epoch, step, history = run.restore({"g": gan.generator, "d": gan.discriminator}, {}, torch.Generator())
    assert (epoch, step, len(history["steps"]), len(history["epochs"])) == (1, 6, 6, 1)
    assert torch.isfinite(gan.sample(2, torch.Generator().manual_seed(0))).all()


def test_saturating_and_hinge_losses_are_switches():
    assert gan_training.GAN_LOSSES["bce-saturating"][1] is not gan_training.GAN_LOSSES["bce"][1]
    assert set(gan_training.GAN_LOSSES) == {"bce", "bce-saturating", "hinge", "lsgan"}
    assert gan_measure.describe_recipe(gan_training.GANRecipe(), SMALL) == "BCE + non-saturating L_G, lr 0.0002"


def test_snapshots_survive_json():
    snaps = {0: torch.randint(0, 256, (3, 28, 28, 1), dtype=torch.uint8),
             10: torch.zeros(3, 28, 28, 1, dtype=torch.uint8)}
    back = gan_measure.decode_snapshots(gan_measure.encode_snapshots(snaps))
    assert list(back) == [0, 10] and all(torch.equal(back[k], snaps[k]) for k in snaps)


@pytest.mark.parametrize("name", ["dcgan", "cdcgan"])
def test_shipped_gans_load_and_sample_deterministically(name):
    a, labels = checkpoints.generate(name, 20, seed=5)
    b, _ = checkpoints.generate(name, 20, seed=5)
    c, _ = checkpoints.generate(name, 20, seed=6)
    assert a.shape == (20, 28, 28, 1) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (labels is not None) == (name == "cdcgan")
    meta = checkpoints.read_meta(name)
    assert meta["train_cpu_seconds_steps"] < 40 * 60 and meta["metrics"]["n"] == 10_000


def test_shipped_cdcgan_makes_the_requested_classes():
    from prodlab import metrics

    images, labels = checkpoints.generate("cdcgan", 1000, seed=1)
    r = ruler.load()
    fidelity = metrics.class_fidelity(r.predict(r.features(images)), labels, SPEC.class_names)
    assert fidelity["class_fidelity"] > 0.85


def _is_article_recipe(fields: dict) -> bool:
    """The article's losses with DCGAN's Adam and batches of 64 (the EMA only watches training)."""
    return (fields["loss"] == "bce" and fields["batch_size"] == 64 and fields["lr_g"] == fields["lr_d"] == 2e-4
            and tuple(fields["betas"]) == (0.5, 0.999))


def test_the_shipped_variant_is_the_lower_fid_of_raw_and_ema():
    stale = {"ema_stale_bn": {"fid": 5.0}}  # never shipped, however good it measures
    assert gan_measure.choose_shipped({"raw": {"fid": 10.0}, **stale, "ema": {"fid": 9.0}}) == "ema"
    assert gan_measure.choose_shipped({"raw": {"fid": 8.0}, **stale, "ema": {"fid": 9.0}}) == "raw"
    assert gan_measure.choose_shipped({"raw": {"fid": 8.0}}) == "raw"  # a run without EMA


@pytest.mark.parametrize("name", ["dcgan", "cdcgan"])
def test_shipped_generator_is_the_best_measured_variant_of_its_run(name):
    meta = checkpoints.read_meta(name)
    recipe = registry.recipe_of(name, meta)
    assert recipe == registry.entry(name).recipe  # the shipped checkpoint was trained with the shipped recipe
    rows = {r["variant"]: r for r in meta["ablation"] if r["recipe"] == meta["recipe"]["fields"]}
    assert set(rows) == {"raw", "ema_stale_bn", "ema"}
    assert meta["shipped_variant"] == gan_measure.choose_shipped(rows)
    acceptance = meta["acceptance"]
    article = [r for r in meta["ablation"] if _is_article_recipe(r["recipe"]) and r["variant"] == "raw"]
    assert len(article) == 1 and acceptance["baseline_fid"] == article[0]["fid"]  # the article's recipe
    assert acceptance["cpu_minutes"] <= 1.05 * acceptance["baseline_cpu_minutes"]  # at (at most) equal CPU time
    assert acceptance["fid_ratio_at_most_0.75"] == (acceptance["fid"] <= 0.75 * acceptance["baseline_fid"])


@pytest.mark.parametrize("fid", ["gan-training-curves", "gan-progress", "gan-ablation"])
def test_gan_figures_render_from_the_stored_numbers(fid):
    import matplotlib.pyplot as plt

    from prodlab import chapters, figures  # noqa: F401  (importing the chapters registers their figures)

    fig = figures.REGISTRY[fid].make()
    assert fig.axes and fig.number not in plt.get_fignums()
