"""Metrics against references (scipy FID, a hand-written MMD²), on point sets with known answers, and on the
shipped classifier: each must move the right way when real images are degraded on purpose."""

from __future__ import annotations

import math

import numpy as np
import prdc
import pytest
import scipy.linalg
import torch

from prodlab import data, metrics, ruler, ruler_checks

N_SANITY = 1000  # modest sample size: enough for the monotonicity the notebook shows at 10,000


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_fid_of_identical_sets_is_zero():
    a = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_scipy_sqrtm_reference():
    gen = torch.Generator().manual_seed(1)
    a, b, mix = (torch.randn(shape, generator=gen, dtype=torch.float64) for shape in ((800, 12), (800, 12), (12, 12)))
    b = b @ mix * 0.5 + 0.3  # another covariance and mean
    expected = _scipy_fid(a.numpy(), b.numpy())
    assert expected > 1.0
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_moments_is_fid_of_the_features():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(600, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(600, 8, generator=gen, dtype=torch.float64) @ torch.randn(8, 8, generator=gen,
                                                                               dtype=torch.float64) * 0.4 + 0.2
    moments = [m for x in (a.numpy(), b.numpy()) for m in (x.mean(0), np.cov(x, rowvar=False))]
    assert metrics.frechet_distance(*moments) == pytest.approx(metrics.fid(a, b), rel=1e-6)
    assert metrics.frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)) == pytest.approx(2.0)  # means only
    assert metrics.frechet_distance(np.zeros(1), np.eye(1), np.zeros(1), 4 * np.eye(1)) == pytest.approx(1.0)  # (2-1)^2


def _mmd2_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy




def test_kid_is_the_unbiased_cubic_mmd2():
    # Imported here: torchmetrics loads torchvision, 5 s that every test worker would pay while collecting.
    from torchmetrics.image.kid import poly_mmd

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 5, generator=gen, dtype=torch.float64) + 0.4
    expected = _mmd2_by_hand(x.numpy(), y.numpy())
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-9)
    assert float(poly_mmd(x, y)) == pytest.approx(expected, rel=1e-9)  # torchmetrics agrees with the loop
    mean, std = metrics.kid(x, y, subsets=5, subset_size=40)  # subsets = whole sets, in another order
    assert mean == pytest.approx(expected, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    unequal = _mmd2_by_hand(x.numpy(), y[:25].numpy())
    assert metrics.mmd2_unbiased(x, y[:25]) == pytest.approx(unequal, rel=1e-9)


def test_kid_of_float32_features_matches_float64():
    gen = torch.Generator().manual_seed(6)
    x, y = torch.rand(500, 256, generator=gen), torch.rand(500, 256, generator=gen) * 1.1
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(metrics.mmd2_unbiased(x.double(), y.double()), abs=1e-6)


def test_kid_is_unbiased_and_deterministic():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(2000, 8, generator=gen), torch.randn(2000, 8, generator=gen)
    same, _ = metrics.kid(a, b, subsets=20, subset_size=500)
    shifted, _ = metrics.kid(a, b + 0.3, subsets=20, subset_size=500)
    assert abs(same) < 0.01 < shifted
    assert metrics.kid(a, b, subsets=3, seed=5) == metrics.kid(a, b, subsets=3, seed=5)


def _cluster(n: int, center: float, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + center


def test_precision_recall_on_known_sets():
    a, far = _cluster(100, 0.0, 0), _cluster(100, 100.0, 1)
    # half the samples are real points, half lie far from anything real: precision 0.5, every real point covered
    assert metrics.precision_recall(a, torch.cat([a, far]), k=3) == (0.5, 1.0)
    # samples cover only one of two real clusters: all realistic, half the variety
    assert metrics.precision_recall(torch.cat([a, far]), a, k=3) == (1.0, 0.5)


def test_density_and_coverage_are_those_of_the_authors_package():
    g = np.random.default_rng(0)
    real = g.normal(size=(700, 16)).astype(np.float32)
    for shift, scale in ((0.0, 1.0), (0.2, 1.3), (1.0, 0.5)):
        fake = (g.normal(size=(500, 16)) * scale + shift).astype(np.float32)
        want = prdc.compute_prdc(real, fake, nearest_k=5)
        got = metrics.density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=5, chunk=128)
        assert got == pytest.approx((want["density"], want["coverage"]), abs=1e-12)


def test_an_outlier_lets_garbage_into_precision_but_not_into_density():
    a = _cluster(200, 0.0, 0)
    real = torch.cat([a, torch.full((1, a.shape[1]), 50.0)])  # one outlying real product: a huge k-NN ball
    garbage = torch.full((100, a.shape[1]), 40.0) + _cluster(100, 0.0, 1) * 0.01  # all near the outlier
    precision, _ = metrics.precision_recall(real, garbage, k=5)
    density, coverage = metrics.density_coverage(real, garbage, k=5)
    assert precision == 1.0  # every garbage sample falls in the outlier's ball
    assert density == pytest.approx(1 / 5) and coverage == pytest.approx(1 / len(real))  # one ball of 201


def test_knn_radii_excludes_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert metrics.knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert metrics.knn_radii(x, k=2).tolist() == [3.0, 2.0, 3.0, 5.0]


def test_class_fidelity_and_coverage():
    names = data.spec().class_names
    n = len(names)
    requested = torch.arange(10 * n) % n
    predicted = requested.clone()
    predicted[: 2 * n] = 0  # the first two rounds 0..n-1: two hits (the zeros), 2n - 2 misses
    result = metrics.class_fidelity(predicted, requested, names)
    assert result["class_fidelity"] == pytest.approx(1 - (2 * n - 2) / (10 * n))
    assert result["class_fidelity_per_class"]["T-shirt/top"] == 1.0
    assert result["class_fidelity_per_class"]["Trouser"] == pytest.approx(8 / 10)
    assert list(result["class_fidelity_per_class"]) == list(names)

    uniform = metrics.class_coverage(torch.arange(100 * n) % n, n)
    assert uniform["coverage_tv"] == pytest.approx(0.0) and uniform["classes_covered"] == n
    assert uniform["class_share"] == [round(1 / n, 4)] * n
    single = metrics.class_coverage(torch.full((1000,), 3), n)
    assert single["coverage_tv"] == pytest.approx(1 - 1 / n) and single["classes_covered"] == 1
    assert single["coverage_kl"] == pytest.approx(math.log(n))


def test_class_metrics_take_the_classes_they_are_given():
    three = ("red", "green", "blue")  # another data set's classes
    result = metrics.class_fidelity(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), three)
    assert result["class_fidelity"] == 0.75 and result["class_fidelity_per_class"] == {"red": 1.0, "green": 1.0,
                                                                                       "blue": 0.5}
    coverage = metrics.class_coverage(torch.tensor([0, 0, 1, 2]), 3)
    assert coverage["class_share"] == [0.5, 0.25, 0.25] and coverage["classes_covered"] == 3
    assert coverage["coverage_tv"] == pytest.approx(0.5 - 1 / 3)
    assert len(metrics.class_coverage(torch.tensor([0]), 5)["class_share"]) == 5  # classes never predicted count


def test_memorisation_detects_copied_training_images():
    train_images = data.load("train")[0][:5000]
    heldout = data.load("test")[0][:500]
    copies = metrics.memorisation(train_images[:200], train_images, heldout)
    assert copies["copy_rate"] > 0.95 and copies["distance_ratio"] < 0.1
    fresh = metrics.memorisation(data.load("test")[0][1000:1200], train_images, heldout)
    assert fresh["copy_rate"] < 0.2 and fresh["distance_ratio"] > 0.8


def test_input_convention():
    """Every image metric reads its input through data.as_batch: stored uint8 N x H x W x C and float N x C x H x W
    give the same numbers; [-1, 1] images and batches of no image shape are refused."""
    images = data.load("test")[0][:20]
    x = data.to_float(images)
    assert torch.equal(metrics.laplacian_variance(images), metrics.laplacian_variance(x))
    assert torch.equal(metrics.high_frequency_share(images), metrics.high_frequency_share(x.numpy()))
    assert torch.equal(metrics.nearest_distances(images[:5], images), metrics.nearest_distances(x[:5], x))
    assert metrics.nearest_distances(images[:5], images).max() == 0.0  # each finds itself
    with pytest.raises(ValueError, match="denormalize"):
        metrics.laplacian_variance(data.normalize(x))
    with pytest.raises(ValueError, match="N x C x H x W"):
        metrics.sharpness(torch.zeros(5))


def test_image_metrics_work_per_channel_on_colour_images():
    grey = data.to_float(data.load("test")[0][:8])
    colour = grey.repeat(1, 3, 1, 1)  # three equal channels: each channel's share and variance are the grey ones
    # (the variance over 3 x 676 filtered values instead of 676: an unbiased estimate, 0.1 % apart)
    assert torch.allclose(metrics.laplacian_variance(colour), metrics.laplacian_variance(grey), rtol=2e-3)
    assert torch.allclose(metrics.high_frequency_share(colour), metrics.high_frequency_share(grey), rtol=1e-5)
    wide = torch.rand(4, 3, 16, 24, generator=torch.Generator().manual_seed(0))  # not square, not Fashion-MNIST
    assert metrics.laplacian_variance(wide).shape == (4,) and metrics.high_frequency_share(wide).shape == (4,)
    assert metrics.high_frequency_share(wide).min() > metrics.high_frequency_share(colour).max()  # noise is sharp


def test_degradations():
    images, labels = data.load("test")
    x = images[:50]
    assert torch.equal(ruler_checks.blur(x, 0.0), data.to_float(x))
    blurred = ruler_checks.blur(x, 1.5)
    assert blurred.diff(dim=-1).abs().mean() < 0.6 * data.to_float(x).diff(dim=-1).abs().mean()
    noisy = ruler_checks.add_noise(x, 0.3)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, data.to_float(x))
    kept, kept_labels = ruler_checks.drop_classes(images, labels, 3, 500)
    assert len(kept) == 500 and kept_labels.min() == 3
    assert len(ruler_checks.collapse(x, 5).unique(dim=0)) == len(x[:5].unique(dim=0))


@pytest.fixture(scope="module")
def rl():
    return ruler.load()


@pytest.mark.parametrize("kind,levels", [("blur", (0.0, 1.0, 2.0)), ("noise", (0.0, 0.1, 0.3)), ("drop", (0, 3, 6))])
def test_fid_grows_with_degradation_and_kid_agrees(rl, kind, levels):
    reference = rl.reference("test")
    feats = [rl.features(ruler_checks.degraded(kind, level, N_SANITY)) for level in levels]
    fids = [metrics.fid(reference, f) for f in feats]
    kids = [metrics.kid(reference, f, subsets=10)[0] for f in feats]
    assert fids == sorted(fids) and fids[-1] > 2 * fids[0], fids
    assert kids[-1] > kids[0], kids


def test_collapse_lowers_recall_not_precision(rl):
    reference = rl.reference("test")
    healthy = ruler.generator_report(ruler_checks.degraded("collapse", 1.0, N_SANITY), r=rl, kid_subsets=10)
    collapsed = ruler.generator_report(ruler_checks.degraded("collapse", 0.1, N_SANITY), r=rl, kid_subsets=10)
    assert collapsed["recall"] < 0.5 * healthy["recall"]
    assert collapsed["precision"] > 0.8 * healthy["precision"]
    assert collapsed["fid"] > healthy["fid"]
    assert reference.shape == (10_000, 256)


def test_kid_reuses_the_real_subsets_terms_only_while_they_are_valid():
    """kid() keeps the real features' within-subset terms between calls: each value must still equal
    mmd2_unbiased on that subset pair, also after the real tensor changed in place or for another fake size."""
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(300, 16, generator=g), torch.randn(200, 16, generator=g) + 0.2

    def afresh(real, fake, subsets=5, size=100, seed=0):
        gen = torch.Generator().manual_seed(seed)
        values = []
        for _ in range(subsets):
            r = real[torch.randperm(len(real), generator=gen)[:size]]
            f = fake[torch.randperm(len(fake), generator=gen)[:size]]
            values.append(metrics.mmd2_unbiased(r, f))
        v = torch.tensor(values, dtype=torch.float64)
        return float(v.mean()), float(v.std(unbiased=False))

    assert metrics.kid(real, fake, 5, 100) == afresh(real, fake)
    assert metrics.kid(real, fake + 0.1, 5, 100) == afresh(real, fake + 0.1)  # the same real terms, reused
    assert metrics.kid(real, fake[:150], 5, 100) == afresh(real, fake[:150])  # another fake size: other subsets
    real[0] += 5.0  # in place
    assert metrics.kid(real, fake, 5, 100) == afresh(real, fake)
