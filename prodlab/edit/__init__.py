"""Editing product images with the trained models (article §2.4 "image editing", §3.3 step 4).

The article promises three edits; each is an *inverse problem*: we observe ``y = A(x) + noise`` for an unknown
product ``x`` and a known degradation ``A``, and want ``x`` back.

* Enhancement (增强): denoising (``A`` = identity, Gaussian or salt-and-pepper noise) and super-resolution
  (``A`` = 2 x 2 average pooling, 28 -> 14 pixels for Fashion-MNIST).
* Restoration (修复): inpainting (``A`` = keep the visible pixels, a mask hides the rest).
* Personalised edits (个性化编辑): move a product's latent code (interpolation, class transfer, property
  directions) and decode it.

A classical method knows only smoothness (filters, bicubic, diffusion fill). A generative model knows what
products look like: it restricts ``x`` to its decodings ``x = dec(z)``, and *latent optimisation* finds the code
that explains the observation (Bora et al. 2017, "Compressed sensing using generative models")::

    z* = argmin_z  mean over observed pixels of (A(dec(z)) - y)^2  +  prior_weight * ||z||^2 / latent_dim

The second term is ``-log p(z)`` of the N(0, I) prior of both the VAE (§3.2) and the GAN (§3.1), up to scale:
it keeps ``z`` where the decoder was trained, so the answer is a *plausible* product. It can also be a wrong
product that fits the visible pixels: the notebook shows where the prior invents.

The code is cut by task: ``restore`` (baselines, priors, latent optimisation), ``diffusion_prior`` (the flow model
of chapter 08 as a prior, by SDEdit and RePaint: no latent code, the sampler does the work), ``evaluate`` (the
tables), ``rank`` (do the winners hold in both rulers' feature spaces?) and ``personalise`` (interpolation, class
transfer, directions); the degradations are in ``prodlab.degrade``.
This package gathers their public names, so ``from prodlab import edit; edit.invert(...)`` reads as one.
"""

from prodlab.degrade import (  # noqa: F401
    MASKS,
    blur,
    box_mask,
    downsample,
    gaussian_noise,
    missing_mask,
    rng,
    salt_and_pepper,
)
from prodlab.edit.diffusion_prior import (  # noqa: F401
    REPAINT_RESAMPLE,
    REPAINT_STEPS,
    SDEDIT_SAMPLER,
    SDEDIT_STEPS,
    flow_model,
    repaint,
    sdedit,
    sdedit_start,
    sdedit_time,
)
from prodlab.edit.evaluate import (  # noqa: F401
    FILTER_GRID,
    NOISE_LEVELS,
    NOISES,
    TASKS,
    VALIDATION_IMAGES,
    crossover,
    enhancement_outputs,
    evaluate_editing,
    format_table,
    inpainting_outputs,
    invented,
    psnr,
    showcase,
    shown_masked,
    ssim,
    test_images,
    tuned_filter,
)
from prodlab.edit.personalise import (  # noqa: F401
    DIRECTION_MODELS,
    PROPERTIES,
    SMALL_STEP,
    STEPS,
    brightness,
    class_transfer,
    direction,
    direction_report,
    edit_real,
    height,
    interpolate,
    lerp,
    pattern,
    property_direction,
    render,
    slerp,
    slider_values,
    walk,
    width,
)
from prodlab.edit.restore import (  # noqa: F401
    INVERSION,
    QUICK_INVERSION,
    InversionConfig,
    Prior,
    bicubic,
    decode,
    denoise,
    diffusion_fill,
    gan_prior,
    gaussian_filter,
    inpaint,
    invert,
    load_trained,
    mean_fill,
    mean_image,
    median_filter,
    prior,
    product_image,
    shipped,
    superresolve,
    trained,
    vae_prior,
)
