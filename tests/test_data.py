"""The data layer: Fashion-MNIST's definition (shapes, labels, integrity checks, caching, clear errors), the image
spec and the one normaliser every image batch passes through."""

import gzip
import subprocess
import sys

import pytest
import torch

from prodlab import cli, config, data
from prodlab.datasets import fashion_mnist
from prodlab.datasets.spec import ImageSpec


def test_splits_shapes_and_labels():
    for split, n in fashion_mnist.SPLITS.items():
        images, labels = data.load(split)
        assert images.shape == (n, 28, 28, 1) and images.dtype == torch.uint8  # N x H x W x C
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.bincount(labels).tolist() == [n // 10] * 10
    names = data.spec().class_names
    assert len(names) == 10 and names[7] == "Sneaker" and names[9] == "Ankle boot"
    assert data.spec().shape == (1, 28, 28) and data.spec().num_pixels == 784


def test_polarity_product_bright_on_black():
    images, _ = data.load("test")
    left_right_border = images[:, :, [0, -1]].float().mean()
    centre = images[:, 10:18, 10:18].float().mean()
    assert left_right_border < 10 < 100 < centre


def test_float_and_uint8_round_trip():
    images = data.load("test")[0][:50]
    x = data.to_float(images)
    assert x.shape == (50, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    assert x.stride() == (784, 784, 28, 1) and data.to_uint8(x).stride() == (784, 28, 1, 1)  # row-major: see _standard
    assert torch.equal(data.to_uint8(x), images)
    assert torch.equal(data.to_uint8(x * 2.0 - 0.5), data.to_uint8((x * 2.0 - 0.5).clamp(0, 1)))  # clamped


def test_showcase_is_the_first_product_of_each_class():
    images, labels = data.showcase()
    test_images, test_labels = data.load("test")
    assert labels.tolist() == list(range(10))
    for c in range(10):
        first = int(torch.nonzero(test_labels == c)[0, 0])
        assert torch.equal(images[c], test_images[first])


def test_second_load_in_a_new_process_is_fast():
    data.load("train")  # make sure the cache exists
    code = (
        "import time; from prodlab import data; t = time.perf_counter(); data.load('train');"
        " print(time.perf_counter() - t)"
    )
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert seconds < 1.0


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A data home in tmp_path with the Debian folder and the download both out of reach."""
    data.load("train")  # stage the repo's verified copy first: _copy_raw reads it
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-here")

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(fashion_mnist, "_download", offline)
    fashion_mnist._tensors.cache_clear()
    yield tmp_path
    fashion_mnist._tensors.cache_clear()


def _copy_raw(target, compress: bool = False) -> None:
    """Copy the verified staged files of the repo's data home into ``target``."""
    source = config.REPO_ROOT / "data" / "FashionMNIST" / "raw"
    for name in fashion_mnist.SHA256:
        payload = (source / name).read_bytes()
        if compress:
            (target / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
        else:
            (target / name).write_bytes(payload)


def test_missing_data_names_the_three_remedies(isolated):
    with pytest.raises(data.DataError) as err:
        data.load("train")
    message = str(err.value)
    assert "not found" in message and "network is unreachable" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "python -m prodlab data" in message
    assert config.DATA_ENV in message and str(isolated) in message


def test_cli_data_reports_missing_data_without_traceback(isolated, capsys):
    assert cli.main(["data"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Fashion-MNIST was not found") and "Traceback" not in err


def test_flipped_byte_is_detected_and_named(isolated):
    _copy_raw(isolated)
    path = isolated / "t10k-labels-idx1-ubyte"
    payload = bytearray(path.read_bytes())
    payload[100] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(data.DataError, match=r"Corrupt data file: .*t10k-labels-idx1-ubyte"):
        data.load("test")


def test_gz_files_are_staged_verified_and_cached(isolated):
    _copy_raw(isolated, compress=True)
    images, labels = data.load("test")
    assert images.shape == (10_000, 28, 28, 1)
    assert (isolated / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert fashion_mnist.cache_path().is_file()
    reference = fashion_mnist._tensors(str(config.REPO_ROOT / "data"), True)
    assert torch.equal(labels, reference["test_labels"])


def test_corrupt_cache_is_rebuilt(isolated):
    _copy_raw(isolated)
    data.load("test")
    fashion_mnist._tensors.cache_clear()
    fashion_mnist.cache_path().write_bytes(b"not a safetensors file")
    images, _ = data.load("test")
    assert images.shape == (10_000, 28, 28, 1)


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("validation")


def test_normalise_round_trip_and_range():
    x = data.to_float(data.load("test")[0][:64])
    z = data.normalize(x)
    assert z.min() >= -1.0 and z.max() <= 1.0 and z.min() == -1.0
    assert torch.allclose(data.denormalize(z), x, atol=1e-6)


def test_augmentations_are_what_they_say():
    x = data.to_float(data.load("test")[0][:4])
    augs = data.augmentations(data.spec())
    assert torch.equal(augs["horizontal flip"](x), x.flip(-1))
    assert torch.equal(augs["vertical flip (wrong)"](x), x.flip(-2))
    config.seed_everything(0)
    shifted = augs["shift (pad 3 + crop)"](x)
    assert shifted.shape == x.shape and shifted.min() >= 0.0 and shifted.max() <= 1.0 and not torch.equal(shifted, x)


def test_shoes_are_the_mirror_asymmetric_classes():
    asym = data.mirror_asymmetry(data.class_means(*data.load("train"), data.spec().n_classes))
    shoes = [data.spec().class_names.index(n) for n in ("Sandal", "Sneaker", "Ankle boot")]
    others = [i for i in range(10) if i not in shoes]
    assert asym[shoes].min() > 2 * asym[others].max()


def test_as_batch_is_the_one_gate_for_image_batches():
    images = data.load("test")[0][:4]
    x = data.to_float(images)
    assert torch.equal(data.as_batch(images), x)  # uint8 N x H x W x C
    assert torch.equal(data.as_batch(images[..., 0]), x)  # uint8 N x H x W, one channel
    assert torch.equal(data.as_batch(x[0]), x[:1])  # one float image C x H x W
    assert torch.equal(data.as_batch(x.numpy(), data.spec()), x)
    with pytest.raises(ValueError, match="expected images of shape \\(3, 28, 28\\)"):
        data.as_batch(x, ImageSpec(3, 28, 28, ("a", "b"), (0.5,) * 3, (0.5,) * 3))
    with pytest.raises(ValueError, match="float images must lie in \\[0, 1\\]"):
        data.as_batch(data.normalize(x))
    with pytest.raises(ValueError, match="expected a batch of images"):
        data.as_batch(torch.zeros(5))


def test_image_spec_round_trip_and_checks():
    spec = ImageSpec(3, 32, 32, ("bag", "shoe"), (0.8, 0.7, 0.6), (0.2, 0.2, 0.2),
                     (("colour", ("red", "blue")), ("pattern", ("plain", "stripes"))))
    assert ImageSpec.from_json(__import__("json").loads(__import__("json").dumps(spec.to_json()))) == spec
    assert spec.shape == (3, 32, 32) and spec.num_pixels == 3072 and spec.n_classes == 2
    assert spec.values("colour") == ("red", "blue") and spec.values("class") == ("bag", "shoe")
    assert spec.describe() == "3 x 32 x 32, 2 classes, colour 2, pattern 2"
    with pytest.raises(ValueError, match="no attribute 'size'"):
        spec.values("size")
    with pytest.raises(ValueError, match="one value per channel"):
        ImageSpec(3, 32, 32, ("bag",), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="each named once"):
        ImageSpec(1, 32, 32, ("bag", "bag"), (0.5,), (0.5,))
    measured = ImageSpec.measure(torch.full((2, 8, 8, 3), 255, dtype=torch.uint8), ("a",))
    assert measured.shape == (3, 8, 8) and measured.mean == (1.0, 1.0, 1.0)


def test_the_spec_records_fashion_mnists_pixel_statistics():
    x = data.to_float(data.load("train")[0])
    assert data.spec().mean[0] == pytest.approx(float(x.mean()), abs=1e-4)
    assert data.spec().std[0] == pytest.approx(float(x.std()), abs=1e-4)
