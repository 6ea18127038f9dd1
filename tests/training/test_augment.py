import numpy as np
import pytest

from napari_fcnseg.training import augment as aug
from napari_fcnseg.training.samples import IGNORE_LABEL, PreparedSample


def _aligned(rng, size=48):
    """An image whose labels are a function of it: label = (channel 0 > 0.5)."""
    smooth = np.cumsum(np.cumsum(rng.normal(size=(size, size)), 0), 1)
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    image = np.stack([smooth, 1 - smooth, smooth**2]).astype(np.float32)
    return image, (image[0] > 0.5).astype(np.int64)


def test_flip_rotate_keeps_alignment(rng):
    image, target = _aligned(rng)
    for _ in range(8):
        img, tgt = aug.flip_rotate(image, target, rng)
        np.testing.assert_array_equal(tgt, img[0] > 0.5)


@pytest.mark.parametrize("deform", [aug.elastic_deform, aug.elastic_deform_scipy])
def test_elastic_keeps_alignment(rng, deform):
    image, target = _aligned(rng, 64)
    img, tgt = deform(image, target, rng, sigma=10)
    assert img.dtype == np.float32 and tgt.dtype == target.dtype and img.shape == image.shape
    assert not np.array_equal(tgt, target)  # it did deform
    agree = (tgt == (img[0] > 0.5)).mean()
    assert agree > 0.97  # linear vs nearest interpolation only differ at the boundary


def test_torch_and_scipy_elastic_draw_the_same_deformation(rng):
    """Same random draws, same displacement field up to interpolation details."""
    image, target = _aligned(rng, 96)
    fast = aug.elastic_deform(image, target, np.random.default_rng(5))
    slow = aug.elastic_deform_scipy(image, target, np.random.default_rng(5))
    assert np.abs(fast[0] - slow[0]).mean() < 0.02
    assert (fast[1] == slow[1]).mean() > 0.97


def test_legacy_elastic_reaches_the_scipy_path(rng, monkeypatch):
    calls = []
    original = aug.elastic_deform_scipy
    monkeypatch.setattr(
        aug, "elastic_deform_scipy", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    image, target = _aligned(rng)
    sample = PreparedSample(image, target, "s")
    aug.sample_batch([sample], 4, 32, rng, legacy_elastic=False)
    assert not calls
    aug.sample_batch([sample], 16, 32, rng, legacy_elastic=True)
    assert calls  # half of the crops are deformed


def test_crop_pads_small_images_with_ignore(rng):
    image, target = _aligned(rng, 20)
    img, tgt = aug.random_crop(image, target, 32, rng)
    assert img.shape == (3, 32, 32) and tgt.shape == (32, 32)
    assert (tgt[20:, :] == IGNORE_LABEL).all() and (tgt[:, 20:] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(tgt[:20, :20], target)


def test_crop_finds_sparse_annotation(rng):
    image = np.zeros((1, 200, 200), np.float32)
    target = np.full((200, 200), IGNORE_LABEL, np.int64)
    target[150:153, 20:23] = 1
    for _ in range(5):
        _, tgt = aug.random_crop(image, target, 32, rng)
        assert (tgt == 1).any()


def test_intensity_and_channel_augmentation_leave_labels(rng):
    image, target = _aligned(rng)
    img, tgt = aug.augment_crop(image, target, rng, elastic_probability=0.0)
    assert img.shape == image.shape and tgt.shape == target.shape
    assert sorted(np.unique(tgt)) == sorted(np.unique(target))
    perm = aug.permute_channels(image, np.random.default_rng(3))
    assert sorted(perm.sum(axis=(1, 2)).round(3)) == sorted(image.sum(axis=(1, 2)).round(3))


def test_appearance_blurs_and_bends_contrast_but_not_labels(monkeypatch):
    image, target = _aligned(np.random.default_rng(0))
    monkeypatch.setattr(aug, "BLUR_PROBABILITY", 1.0)
    monkeypatch.setattr(aug, "GAMMA_PROBABILITY", 0.0)
    blurred = aug.jitter_appearance(image, np.random.default_rng(1))
    roughness = lambda a: np.abs(np.diff(a, axis=-1)).mean()  # noqa: E731
    assert blurred.dtype == np.float32 and blurred.shape == image.shape
    assert roughness(blurred) < roughness(image)
    monkeypatch.setattr(aug, "BLUR_PROBABILITY", 0.0)
    monkeypatch.setattr(aug, "GAMMA_PROBABILITY", 1.0)
    bent = aug.jitter_appearance(image, np.random.default_rng(1))
    # a gamma curve keeps the order of intensities (monotone) and the 0 and 1 ends
    order = np.argsort(image[0].ravel(), kind="stable")
    assert (np.diff(bent[0].ravel()[order]) >= -1e-6).all()
    assert not np.allclose(bent, image)
    _, tgt = aug.augment_crop(image, target, np.random.default_rng(2), appearance=True)
    assert sorted(np.unique(tgt)) == sorted(np.unique(target))


def test_a_noisy_channel_is_one_faint_grainy_channel(monkeypatch):
    image, target = _aligned(np.random.default_rng(0))
    monkeypatch.setattr(aug, "CHANNEL_NOISE_PROBABILITY", 1.0)
    noisy = aug.noisy_channel(image, np.random.default_rng(3))
    changed = [c for c in range(3) if not np.array_equal(noisy[c], image[c])]
    assert len(changed) == 1 and noisy.dtype == np.float32
    c = changed[0]
    residual = noisy[c] - image[c] * (noisy[c] * image[c]).sum() / (image[c] ** 2).sum()
    assert 0.03 < residual.std() < 0.3  # noise of the configured strength was added
    monkeypatch.setattr(aug, "CHANNEL_NOISE_PROBABILITY", 0.0)
    assert aug.noisy_channel(image, np.random.default_rng(3)) is image
    _, tgt = aug.augment_crop(image, target, np.random.default_rng(2), channel_noise=True)
    assert sorted(np.unique(tgt)) == sorted(np.unique(target))


def test_extra_channels_are_not_jittered(rng):
    image, target = _aligned(rng)
    stacked = np.concatenate([image, image * 255])
    img, _ = aug.augment_crop(stacked, target, rng, elastic_probability=0.0, network_channels=3)
    assert img.shape == (6, 48, 48)
    assert img[3:].min() >= 0 and img[3:].max() <= 255  # untouched apart from geometry


def test_batch_is_reproducible():
    rng = np.random.default_rng(0)
    image, target = _aligned(rng, 80)
    samples = [PreparedSample(image, target)]
    a = aug.sample_batch(samples, 4, 32, np.random.default_rng(5))
    b = aug.sample_batch(samples, 4, 32, np.random.default_rng(5))
    assert a[0].shape == (4, 3, 32, 32) and a[1].dtype == np.int64
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
