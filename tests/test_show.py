"""prodlab.show renders the package's own source and walks a model's layers."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from prodlab import data, losses, show


def test_show_is_the_installed_source():
    code = show.show(losses.gaussian_kl, losses.discriminator_loss)
    assert code.data == inspect.getsource(losses.gaussian_kl).rstrip() + "\n\n" + \
        inspect.getsource(losses.discriminator_loss).rstrip() + "\n"
    assert '<span class="nf">gaussian_kl</span>' in code._repr_html_()  # highlighted HTML for notebooks, the book


def test_shape_walk_lists_every_leaf_layer_in_call_order(capsys):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    model.train()
    rows = show.shape_walk(model, torch.zeros(2, 1, 28, 28))
    assert [r.kind for r in rows] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    assert [r.shape for r in rows] == [((2, 4, 14, 14),), ((2, 4, 14, 14),), ((2, 784),), ((2, 3),)]
    assert rows[0].params == 4 * 9 + 4 and rows[1].params == 0
    assert model.training and not any(m._forward_hooks for m in model.modules())  # left as it was
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("2x1x28x28") and "2x4x14x14" in out


def test_shape_walk_reports_tuple_outputs():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu, self.logvar = nn.Linear(5, 2), nn.Linear(5, 2)

        def forward(self, x):
            return self.mu(x), self.logvar(x)

    rows = show.layer_shapes(Encoder(), torch.zeros(3, 5))
    assert [(r.name, r.shape) for r in rows] == [("mu", ((3, 2),)), ("logvar", ((3, 2),))]


def test_shape_walk_on_the_workbook_models():
    from prodlab.models.gan import GAN, GANConfig
    from prodlab.models.vae import ConvVAE, VAEConfig

    spec = data.spec()
    gan = GAN(GANConfig(spec))
    rows = show.layer_shapes(gan.generator, torch.zeros(4, gan.cfg.latent_dim), None)
    assert rows[-1].shape == ((4, *spec.shape),)  # noise in, a batch of images out (4 x 1 x 28 x 28)
    vae = ConvVAE(VAEConfig(spec, latent_dim=2))
    rows = show.layer_shapes(vae, torch.zeros(4, *spec.shape))
    assert ((4, 2),) in [r.shape for r in rows] and rows[-1].shape[0][-2:] == (spec.height, spec.width)
