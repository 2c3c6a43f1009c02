"""Chapter 00's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch

from prodlab import data, exercises

SPEC = data.spec()


def class_means(images, labels):
    """The notebook's answer: the learner's function takes images and labels only, the classes come from the spec."""
    return data.class_means(images, labels, SPEC.n_classes)


def channels_last(images, labels):
    """Scaled and averaged, but in the stored layout N x H x W x C."""
    x = images.float() / 255
    return torch.stack([x[labels == c].mean(0) for c in range(SPEC.n_classes)])


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
}
