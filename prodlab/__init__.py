"""prodlab: generative models (GAN, VAE) for e-commerce product images, the package behind the workbook."""

__version__ = "0.1.0"
