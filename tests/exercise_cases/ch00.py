"""Chapter 00's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prodlab import data, exercises
from prodlab.datasets import colour

SPEC = data.spec()


def class_means(images, labels):
    """The notebook's answer: the learner's function takes images and labels only, the classes come from the spec."""
    return data.class_means(images, labels, SPEC.n_classes)


def channels_last(images, labels):
    """Scaled and averaged, but in the stored layout N x H x W x C."""
    x = images.float() / 255
    return torch.stack([x[labels == c].mean(0) for c in range(SPEC.n_classes)])


def whole_image_colour(images):
    """The nearest named colour of the whole image's mean: the light background wins."""
    ref = torch.tensor([rgb for _, rgb in colour.COLOURS])
    return torch.cdist(images.float().div(255).mean((1, 2)), ref).argmin(1)


def direction_only(images):
    """Coloured and dark pixels, named by direction alone: black and white (both grey) are confused."""
    x = images.float() / 255
    ref = F.normalize(torch.tensor([rgb for _, rgb in colour.COLOURS]), dim=1)
    bright = x.amax(-1)
    keep = ((bright - x.amin(-1)) / bright.clamp_min(1e-6) > 0.4) | (bright < 0.3)
    means = torch.stack([x[i][keep[i]].mean(0) if keep[i].any() else x[i].mean((0, 1)) for i in range(len(x))])
    return (F.normalize(means, dim=1) @ ref.T).argmax(1)


CASES = {
    exercises.check_class_means: (
        class_means,
        [(lambda im, lab: class_means(im, lab) * 255, "255"),
         (lambda im, lab: data.to_float(im).mean(0).expand(SPEC.n_classes, *SPEC.shape), "same image"),
         (lambda im, lab: class_means(im, lab)[:-1], "shape"),
         (channels_last, "channels last")],
    ),
    exercises.check_mirror_asymmetry: (
        data.mirror_asymmetry,
        [(lambda m: (m - m.flip(-2)).flatten(1).norm(dim=1) / m.flatten(1).norm(dim=1), "top to bottom"),
         (lambda m: (m - m.flip(-1)).flatten(1).norm(dim=1), "relative")],
    ),
    exercises.check_name_colours: (
        colour.name_colours,
        [(whole_image_colour, "product's pixels"), (direction_only, "brightness")],
    ),
}
