"""Every network scales with the image spec: 28, 32 and 64 pixels, 1 or 3 channels, any number of classes; a
checkpoint of each family rebuilds from its JSON alone; the shipped checkpoints still load under the new format."""

from __future__ import annotations

import pytest
import torch

from prodlab import checkpoints, data, models, text
from prodlab.datasets import colour, fashion_mnist
from prodlab.datasets.spec import ImageSpec
from prodlab.models import autoencoder as ae_models
from prodlab.models import classifier as classifier_models
from prodlab.models import clip as clip_models
from prodlab.models import encoder as encoder_models
from prodlab.models import gan as gan_models
from prodlab.models import shapes, unet
from prodlab.models import text_diffusion as td_models
from prodlab.models import vae as vae_models

SPECS = {
    "grey 28": data.spec(),
    "colour 32": ImageSpec(3, 32, 32, ("bag", "dress", "shoe"), (0.8, 0.7, 0.7), (0.3, 0.3, 0.3)),
    "colour 64": ImageSpec(3, 64, 64, tuple(f"class {i}" for i in range(5)), (0.5,) * 3, (0.25,) * 3),
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_gans_draw_and_judge_images_of_the_spec(spec):
    gan = gan_models.GAN(gan_models.GANConfig(spec, latent_dim=8, width=4, conditional=True)).eval()
    labels = torch.arange(6) % spec.n_classes
    x = gan.sample(6, torch.Generator().manual_seed(0), labels)
    assert x.shape == (6, *spec.shape) and x.min() >= 0 and x.max() <= 1
    assert gan.discriminator(data.normalize(x), labels).shape == (6,)
    assert gan.discriminator_features(x).shape == (6, gan.cfg.features)
    assert gan.cfg.n_classes == spec.n_classes
    assert gan_models.GANConfig(spec).n_classes == 0  # unconditional


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_vaes_encode_and_decode_images_of_the_spec(spec):
    for cfg in (vae_models.VAEConfig(spec, latent_dim=3, channels=(4, 8), hidden=16),
                vae_models.ReferenceVAEConfig(spec, latent_dim=3, hidden=16)):
        model = vae_models.build_vae(cfg).eval()
        x = torch.rand(5, *spec.shape)
        logits, mu, logvar = model(x, torch.Generator().manual_seed(0))
        assert logits.shape == x.shape and mu.shape == logvar.shape == (5, 3)
        assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, *spec.shape)


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_classifiers_read_images_of_the_spec(spec):
    model = classifier_models.ProductClassifier(classifier_models.ClassifierConfig(spec, channels=(4, 8, 8),
                                                                                   hidden=16)).eval()
    x = torch.rand(5, *spec.shape)
    assert model(x).shape == (5, spec.n_classes) and model.features(x).shape == (5, 16)
    assert model.pixel_mean.flatten().tolist() == pytest.approx(list(spec.mean))


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_diffusion_models_predict_and_sample_images_of_the_spec(spec):
    model = unet.DiffusionModel(unet.DiffusionConfig(spec, width=8, steps=2, guidance=1.5)).eval()
    x = torch.randn(3, *spec.shape)
    assert model(x, torch.rand(3), torch.arange(3) % spec.n_classes).shape == x.shape
    out = model.sample(3, torch.Generator().manual_seed(0), torch.zeros(3, dtype=torch.long))
    assert out.shape == (3, *spec.shape)


def test_the_resolution_ladder_follows_the_spec():
    assert [shapes.halvings(s) for s in SPECS.values()] == [2, 2, 3]
    assert shapes.bottom(data.spec(), 2) == (7, 7)
    with pytest.raises(ValueError, match="divisible by 4"):
        shapes.halvings(ImageSpec(1, 30, 30, ("a",), (0.5,), (0.5,)))
    with pytest.raises(ValueError, match="must be divisible by 4"):
        unet.DiffusionConfig(ImageSpec(1, 30, 30, ("a",), (0.5,), (0.5,)))


@pytest.mark.parametrize("kind", sorted(models.FAMILIES))
def test_every_family_rebuilds_from_its_checkpoint_json(kind, tmp_path):
    spec = SPECS["colour 32"]
    vae = vae_models.VAEConfig(spec, latent_dim=3, channels=(4, 8), hidden=16)
    text_config = clip_models.CLIPConfig(spec, text.Tokenizer.from_texts(["a red bag", "a blue dress"]), width=8,
                                         heads=2, image_widths=(8, 16), embed_dim=4)
    first_stage = ae_models.AutoencoderConfig(spec, widths=(8, 8, 8), latent_channels=2)
    cfg = {"classifier": classifier_models.ClassifierConfig(spec, channels=(4, 8, 8), hidden=16),
           "gan": gan_models.GANConfig(spec, latent_dim=8, width=4, conditional=True), "vae": vae,
           "diffusion": unet.DiffusionConfig(spec, width=8), "latent-diffusion": unet.LatentDiffusionConfig(vae),
           "encoder": encoder_models.EncoderConfig(spec, widths=(8, 16), projection_dim=4),
           "clip": text_config, "autoencoder": first_stage,
           "text-diffusion": td_models.TextDiffusionConfig(first_stage, text_config, width=8, heads=2)}[kind]
    build = models.FAMILIES[kind][0]
    torch.manual_seed(0)
    model = build(cfg)
    checkpoints.save("m", model, dataset=data.DEFAULT, recipe=None, command="test", seed=0, train_seconds=0.0,
                     metrics={}, directory=tmp_path)
    loaded = checkpoints.load("m", tmp_path, kind=kind)
    assert loaded.cfg == cfg and models.kind_of(loaded) == kind
    assert ImageSpec.from_json(checkpoints.read_meta("m", tmp_path)["image_spec"]) == spec
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", checkpoints.names())
def test_shipped_checkpoints_load_as_models_of_their_data_set(name):
    dataset = checkpoints.read_meta(name)["dataset"]
    model = checkpoints.load(name)
    if dataset == data.DEFAULT:
        assert model.cfg.image == data.spec()
    else:  # the colour catalogue, as its definition says (its pixel statistics are measured when it is built)
        assert dataset == colour.NAME and model.cfg.image.shape == (3, colour.SIZE, colour.SIZE)
        assert model.cfg.image.class_names == fashion_mnist.CLASS_NAMES
        assert model.cfg.image.attributes == colour.ATTRIBUTES
    if models.is_generative(model):
        images, labels = checkpoints.generate(name, 3, model=model)
        c, h, w = model.cfg.image.shape
        assert images.shape == (3, h, w, c) and images.dtype == torch.uint8
        assert (labels is not None) == models.is_conditional(model)
