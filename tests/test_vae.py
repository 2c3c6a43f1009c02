"""The VAEs of notebook 03 (prodlab.models.vae, the VAE section of prodlab.train) and the shipped vae/vae2d."""

import dataclasses
import json
import math
import warnings

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from prodlab import checkpoints, data, losses, runs
from prodlab.chapters import ch03_vae
from prodlab.models import vae as vae_models
from prodlab.training import vae as vae_training
from prodlab.training import vae_measure

TINY = vae_training.VAERecipe(epochs=2, batch_size=64, train_limit=192, eval_images=64)


SPEC = data.spec()


def _x(n: int = 8) -> torch.Tensor:
    return data.to_float(data.load("test")[0][:n])


@pytest.mark.parametrize("model", [vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=5)),
                                   vae_models.ReferenceMLPVAE(vae_models.ReferenceVAEConfig(SPEC))],
                         ids=["conv", "reference"])
def test_shapes_and_sample_range(model):
    x = _x(4)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, model.latent_dim)
    logits, _, _ = model(x, torch.Generator().manual_seed(0))
    assert logits.shape == (4, *SPEC.shape)
    samples = model.sample(6, torch.Generator().manual_seed(0))
    assert samples.shape == (6, *SPEC.shape) and samples.min() >= 0.0 and samples.max() <= 1.0
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))


def test_reparameterisation_lets_gradients_reach_mu_and_sigma():
    mu = torch.zeros(3, 4, requires_grad=True)
    logvar = torch.zeros(3, 4, requires_grad=True)
    z = vae_models.VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    z.pow(2).sum().backward()
    assert torch.allclose(mu.grad, 2 * z.detach())  # dz/dmu = 1
    assert torch.allclose(logvar.grad, 2 * z.detach() * 0.5 * eps)  # dz/dlogvar = sigma/2 * eps, sigma = 1


def test_neg_elbo_matches_torch_distributions():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=3)).eval()
    x = _x(5)
    ours = vae_models.neg_elbo_bernoulli(model, x, seed=7)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
        log_px = Bernoulli(logits=model.decode_logits(z), validate_args=False).log_prob(x).flatten(1).sum(1)
        kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(ours, -log_px + kl, rtol=1e-5)


def test_iwae_is_below_the_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=4)).eval()
    x = _x(64)
    elbo = vae_models.neg_elbo_bernoulli(model, x).mean()
    iwae = {k: vae_models.iwae_nll(model, x, k=k).mean() for k in (1, 10, 100)}
    assert iwae[100] < iwae[10] < iwae[1]
    assert iwae[100] <= elbo


def test_iwae_with_one_sample_is_an_elbo_sample_in_expectation():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=4, channels=(8, 16), hidden=32)).eval()
    x = _x(1).repeat(3000, 1, 1, 1)
    elbo = vae_models.neg_elbo_bernoulli(model, x, seed=1)
    iwae1 = vae_models.iwae_nll(model, x, k=1, seed=2)
    stderr = math.sqrt(iwae1.var() / len(x) + elbo.var() / len(x))
    assert abs(float(iwae1.mean() - elbo.mean())) < 4 * stderr


def test_mean_reduction_multiplies_beta_by_the_number_of_pixels():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=3))
    x = _x(4)
    logits, mu, logvar = model(x, torch.Generator().manual_seed(0))
    trap = vae_training.vae_objective(logits, x, mu, logvar, dataclasses.replace(TINY, reduction="mean"))
    scaled = vae_training.vae_objective(logits, x, mu, logvar, dataclasses.replace(TINY, beta=float(SPEC.num_pixels)))
    assert torch.allclose(trap.total * SPEC.num_pixels, scaled.total)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = vae_models.VAEConfig(SPEC, latent_dim=2, hidden=16)
    straight, _ = vae_training.train_vae(cfg, TINY, runs.Run("straight", tmp_path), progress=False)
    vae_training.train_vae(cfg, dataclasses.replace(TINY, epochs=1), runs.Run("resumed", tmp_path), progress=False)
    resumed, history = vae_training.train_vae(cfg, TINY, runs.Run("resumed", tmp_path), progress=False, resume=True)
    assert [h["epoch"] for h in history] == [1, 2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_nan_loss_stops_cleanly_and_the_last_state_loads(tmp_path, monkeypatch):
    cfg = vae_models.VAEConfig(SPEC, latent_dim=2, hidden=16)
    real = vae_training.vae_objective
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss._replace(total=loss.total * math.nan) if calls["n"] > 3 else loss  # epoch 1 = 3 steps

    monkeypatch.setattr(vae_training, "vae_objective", poisoned)
    run = runs.Run("nan", tmp_path)
    with pytest.raises(runs.DivergenceError, match=r"step 4: loss = nan.*state\.pt"):
        vae_training.train_vae(cfg, TINY, run, progress=False)
    model = vae_models.ConvVAE(cfg)
    epoch, step, _ = run.restore({"model": model}, {}, torch.Generator())
    assert (epoch, step) == (1, 3)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_collapse_warning_fires_only_for_dead_dimensions():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=6)).eval()
    x = _x(32)
    with torch.no_grad():
        model.to_mu.bias.fill_(1.0)  # every dimension away from the prior: all active
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vae_training.check_posterior_collapse(model, x)
    with torch.no_grad():
        for head in (model.to_mu, model.to_logvar):
            head.weight[1:].zero_()
            head.bias[1:].zero_()  # q(z_j|x) = N(0, 1) = p(z_j) for j >= 1: 5 of 6 dead
    with pytest.warns(vae_training.PosteriorCollapseWarning, match="only 1 of 6"):
        kl = vae_training.check_posterior_collapse(model, x)
    assert vae_models.active_units(kl) == 1


@pytest.mark.parametrize("name", ["vae", "vae-sharp", "vae2d"])
def test_shipped_checkpoints_load_and_sample_deterministically(name):
    a, _ = checkpoints.generate(name, 16, seed=3)
    b, _ = checkpoints.generate(name, 16, seed=3)
    c, _ = checkpoints.generate(name, 16, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (16, 28, 28, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    meta = checkpoints.read_meta(name)
    assert meta["quick_mode"] is False
    assert meta["config"]["latent_dim"] == {"vae": 16, "vae-sharp": 16, "vae2d": 2}[name]


def test_shipped_vae_beats_the_pytorch_reference_on_test_images():
    model = checkpoints.load("vae")
    neg_elbo = float(vae_models.neg_elbo_bernoulli(model, _x(1000)).mean())
    meta = checkpoints.read_meta("vae")
    reference = meta["reference"]["metrics"]["neg_elbo_bernoulli"]
    assert neg_elbo < 240.0 and neg_elbo < reference
    assert json.loads(json.dumps(meta["acceptance"]))["beats_reference"] is True


@pytest.mark.parametrize("fid", ["vae-reconstructions", "vae-samples", "vae-manifold", "vae-latent",
                                 "vae-traversals", "vae-equal-compute"])
def test_vae_figures_from_the_shipped_checkpoints_render(fid):
    from prodlab import figures

    fig = figures.REGISTRY[fid].make()
    assert fig.axes and fig.get_size_inches()[0] >= 6


def test_autoencoder_has_the_vae_layers_and_a_deterministic_code():
    torch.manual_seed(0)
    vae = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=3))
    torch.manual_seed(0)
    ae = vae_models.build_vae(vae_models.AutoencoderConfig(SPEC, latent_dim=3))
    assert isinstance(ae, vae_models.ConvAutoencoder) and ae.to_logvar is None
    vae_weights = vae.state_dict()
    for name, tensor in ae.state_dict().items():  # the same seed gives the same weights, minus the log-variance head
        assert torch.equal(tensor, vae_weights[name])
    assert set(vae_weights) - set(ae.state_dict()) == {"to_logvar.weight", "to_logvar.bias"}
    x = _x(4)
    mu, _ = ae.encode(x)
    a, _, _ = ae(x, torch.Generator().manual_seed(0))
    b, _, _ = ae(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a, ae.decode_logits(mu))  # no sampling: the code is mu


def test_autoencoder_step_with_beta_zero_is_the_reconstruction_alone():
    torch.manual_seed(0)
    ae = vae_models.ConvAutoencoder(vae_models.VAEConfig(SPEC, latent_dim=3))
    x = _x(4)
    recipe = dataclasses.replace(TINY, beta=0.0)
    values = vae_training.vae_step(ae, torch.optim.SGD(ae.parameters(), lr=0.0), x, recipe, torch.Generator())
    with torch.no_grad():
        expected = float(losses.reconstruction_bce(ae.decode_logits(ae.encode(x)[0]), x, reduction="mean"))
    assert values["total"] == pytest.approx(expected, rel=1e-6)


def test_fitted_gaussian_codes_have_the_codes_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(5000, 3, generator=gen) @ torch.tensor([[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 0.5]]) + 3.0
    draws = vae_measure.fitted_gaussian_codes(codes, 20_000, gen)
    assert torch.allclose(draws.mean(0), codes.mean(0), atol=0.08)
    assert torch.allclose(torch.cov(draws.T), torch.cov(codes.T), atol=0.15)
    stats = vae_measure.code_statistics(codes)
    assert stats["std_max"] > 2 and stats["norm"] > stats["prior_norm"]


def test_latent_traversal_changes_one_dimension_per_row():
    torch.manual_seed(0)
    model = vae_models.ConvVAE(vae_models.VAEConfig(SPEC, latent_dim=4)).eval()
    z0, values = torch.zeros(4), torch.tensor([-1.0, 0.0, 1.0])
    tiles = ch03_vae.latent_traversal(model, z0, [2, 0], values)
    assert tiles.shape == (2, 3, *SPEC.shape)
    assert torch.allclose(tiles[1, 1], model.decode(z0[None])[0], atol=1e-6)  # dimension 0 set to 0: z0 itself
    assert torch.allclose(tiles[0, 2], model.decode(torch.tensor([[0.0, 0.0, 1.0, 0.0]]))[0], atol=1e-6)


def test_cumulative_cpu_minutes_sums_the_epochs():
    history = [{"cpu_seconds": 30.0}, {"cpu_seconds": 90.0}]
    assert ch03_vae.cumulative_cpu_minutes(history).tolist() == [0.5, 2.0]
