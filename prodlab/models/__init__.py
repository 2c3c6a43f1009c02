"""The networks: the DCGAN (chapter 02), the VAEs (chapter 03), the product classifier and the self-supervised
encoder, the two rulers of chapter 04, the U-Net of the diffusion models and the latent prior (chapter 08), and the
text-image model, the first stage and the text-to-product model (chapter 10). Each is built from a frozen config
dataclass that holds the image spec it reads or draws, and that a checkpoint records whole.

:data:`FAMILIES` names each kind of network with its class and its config class: what a checkpoint's ``kind``
says, so a checkpoint can be rebuilt from its JSON alone.
"""

from __future__ import annotations

from torch import nn

from prodlab.models.autoencoder import Autoencoder, AutoencoderConfig
from prodlab.models.classifier import ClassifierConfig, ProductClassifier
from prodlab.models.clip import CLIP, CLIPConfig
from prodlab.models.encoder import ContrastiveEncoder, EncoderConfig
from prodlab.models.gan import GAN, GANConfig
from prodlab.models.text_diffusion import TextDiffusion, TextDiffusionConfig
from prodlab.models.unet import DiffusionConfig, DiffusionModel, LatentDiffusion, LatentDiffusionConfig
from prodlab.models.vae import ConvVAE, VAEConfig

FAMILIES: dict[str, tuple[type[nn.Module], type]] = {
    "classifier": (ProductClassifier, ClassifierConfig),
    "gan": (GAN, GANConfig),
    "vae": (ConvVAE, VAEConfig),
    "diffusion": (DiffusionModel, DiffusionConfig),
    "latent-diffusion": (LatentDiffusion, LatentDiffusionConfig),
    "encoder": (ContrastiveEncoder, EncoderConfig),
    "clip": (CLIP, CLIPConfig),
    "autoencoder": (Autoencoder, AutoencoderConfig),
    "text-diffusion": (TextDiffusion, TextDiffusionConfig),
}


def kind_of(model: nn.Module) -> str:
    """The family name of ``model`` (``ValueError`` for a network no checkpoint can hold)."""
    for kind, (cls, _) in FAMILIES.items():
        if type(model) is cls:
            return kind
    raise ValueError(f"{type(model).__name__} is not a network a checkpoint can hold ({', '.join(FAMILIES)})")


def draws_images(kind: str) -> bool:
    """Whether the networks of family ``kind`` draw images (their class has ``sample``): not the rulers' networks
    (classifier, encoder) nor the text-image model."""
    return callable(getattr(FAMILIES[kind][0], "sample", None))


def is_generative(model: nn.Module) -> bool:
    """The model draws new images: ``sample(n, generator, labels=None)``."""
    return callable(getattr(model, "sample", None))


def is_conditional(model: nn.Module) -> bool:
    """The model's ``sample`` takes one class label per image."""
    return is_generative(model) and getattr(model.cfg, "n_classes", 0) > 0
