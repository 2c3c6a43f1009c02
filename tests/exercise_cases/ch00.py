"""Chapter 00's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

from prodlab import data, exercises

CASES = {
    exercises.check_class_means: (
        data.class_means,
        [(lambda im, lab: data.class_means(im.float(), lab), "255"),
         (lambda im, lab: (im.float() / 255).mean(0).expand(10, 28, 28), "same image"),
         (lambda im, lab: data.class_means(im, lab)[:9], "shape")],
    ),
    exercises.check_mirror_asymmetry: (
        data.mirror_asymmetry,
        [(lambda m: (m - m.flip(-2)).flatten(1).norm(dim=1) / m.flatten(1).norm(dim=1), "top to bottom"),
         (lambda m: (m - m.flip(-1)).flatten(1).norm(dim=1), "relative")],
    ),
}
