import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fcnseg.errors import InputError
from napari_fcnseg.training.synthetic import (
    CLASS_NAMES,
    CONFOCAL,
    make_brightfield_slice,
    make_egg_chamber_slice,
    make_egg_chamber_stack,
)

SEEDS = range(6)


@pytest.fixture(scope="module")
def slices():
    return [make_egg_chamber_slice((192, 256), rng=seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def stack():
    return make_egg_chamber_stack((8, 128, 160), rng=3, scale=0.6)


def test_slice_shapes_and_dtypes(slices):
    image, labels = slices[0]
    assert image.shape == (192, 256, 3) and image.dtype == np.uint8
    assert labels.shape == (192, 256) and labels.dtype == np.uint8
    assert labels.max() <= 3 and len(CLASS_NAMES) == 4


def test_single_channel_slice():
    image, labels = make_egg_chamber_slice((64, 80), rng=1, channels=1)
    assert image.shape == (64, 80) and image.dtype == np.uint8 and labels.shape == (64, 80)


def test_same_seed_same_output_and_generators_accepted():
    a_img, a_lab = make_egg_chamber_slice((96, 96), rng=42)
    b_img, b_lab = make_egg_chamber_slice((96, 96), rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = make_egg_chamber_slice((96, 96), rng=43)
    assert not np.array_equal(a_img, c_img)


def test_typical_slices_hold_all_four_classes(slices):
    complete = [len(np.unique(labels)) == 4 for _, labels in slices]
    assert sum(complete) >= len(slices) - 1


def test_labels_agree_with_fluorescence(slices):
    for image, labels in slices:
        grey = image.max(axis=-1).astype(float)
        assert grey[labels > 0].mean() > grey[labels == 0].mean() + 20
        if (labels == 2).any() and (labels == 3).any():  # nuclei brighter than cytoplasm
            assert grey[labels == 2].mean() > grey[labels == 3].mean()


def _follicle_only_buds(labels):
    """Connected egg regions of more than 50 px that hold no nurse-cell class."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    regions = regionprops(ndi.label(labels > 0)[0], intensity_image=labels)
    return [r for r in regions if r.area > 50 and r.intensity_max == 1]


def test_tips_end_chains_in_a_large_bright_germarium():
    plain, tipped, brightness = [], [], []
    for seed in range(12):  # the recipe's slice size: a chain's tip is often out of view
        _, labels = make_egg_chamber_slice((512, 768), rng=seed)
        plain += [r.area for r in _follicle_only_buds(labels)]
        image, labels = make_egg_chamber_slice((512, 768), rng=seed, tips=True)
        buds = _follicle_only_buds(labels)
        tipped += [r.area for r in buds]
        grey = image.max(axis=-1).astype(float)
        for r in buds:
            if (labels == 2).any():
                rows, cols = r.coords.T
                brightness.append(grey[rows, cols].mean() / grey[labels == 2].mean())
    # without tips a chain shrinks to small round buds (semi-axes under 24 px); a germarium is
    # up to 40 px across its chain and twice as long
    assert max(np.sqrt(np.array(tipped) / np.pi)) > 28 > max(np.sqrt(np.array(plain) / np.pi))
    assert sum(tipped) > 1.3 * sum(plain)
    # its packed nuclei are about as bright as the nurse cells' (as the real tips are)
    assert np.median(brightness) > 0.5


def test_tips_leave_the_default_slices_unchanged():
    a = make_egg_chamber_slice((96, 96), rng=7)
    b = make_egg_chamber_slice((96, 96), rng=7, tips=False)
    np.testing.assert_array_equal(a[0], b[0])
    c = make_egg_chamber_stack((3, 64, 64), rng=2, tips=True)
    assert c[0].shape == (3, 64, 64, 3) and c[1].max() <= 3


def _neck_brightness(image: np.ndarray, labels: np.ndarray) -> float:
    """Mean grey level of the background in the necks between chambers (a closing's gain)."""
    chambers = labels > 0
    grown = ndi.binary_dilation(chambers, iterations=3)
    necks = ndi.binary_closing(chambers, iterations=12) & ~grown
    return float(image.max(axis=-1)[necks].mean()) if necks.any() else 0.0


def test_stalks_fill_the_necks_with_dim_background_tissue():
    plain, stalked, inside = [], [], []
    for seed in range(6):
        image, labels = make_egg_chamber_slice((384, 512), rng=seed, optics=CONFOCAL)
        plain.append(_neck_brightness(image, labels))
        image, labels = make_egg_chamber_slice((384, 512), rng=seed, optics=CONFOCAL, stalks=True)
        stalked.append(_neck_brightness(image, labels))
        inside.append(image.max(axis=-1)[labels > 0].mean())
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
    # the real slices' necks hold dim tissue outside the annotated outlines (grey 13-49 against
    # about 80 inside); without stalks the synthetic necks are as dark as the background
    assert np.mean(stalked) > 2 * np.mean(plain) + 5
    assert np.mean(stalked) < 0.8 * np.mean(inside)


def test_stalks_leave_the_default_slices_unchanged():
    a = make_egg_chamber_slice((96, 96), rng=7, tips=True)
    b = make_egg_chamber_slice((96, 96), rng=7, tips=True, stalks=False)
    np.testing.assert_array_equal(a[0], b[0])
    c = make_egg_chamber_stack((3, 64, 64), rng=2, stalks=True)
    assert c[0].shape == (3, 64, 64, 3) and c[1].max() <= 3


def test_stack_shapes_and_consistency_across_z(stack):
    image, labels = stack
    assert image.shape == (8, 128, 160, 3) and image.dtype == np.uint8
    assert labels.shape == (8, 128, 160) and labels.dtype == np.uint8
    fg = labels > 0
    areas = fg.sum(axis=(1, 2))
    assert areas.min() > 0 and len(set(areas.tolist())) > 1  # chambers grow or shrink in z
    for upper, lower in itertools.pairwise(fg):
        assert (upper & lower).sum() / (upper | lower).sum() > 0.6
    grey = image.max(axis=-1).astype(float)
    assert grey[fg].mean() > grey[~fg].mean() + 20


def test_stack_determinism_and_single_channel():
    a, la = make_egg_chamber_stack((3, 48, 48), rng=5, channels=1)
    b, lb = make_egg_chamber_stack((3, 48, 48), rng=5, channels=1)
    assert a.shape == (3, 48, 48)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


def test_brightfield_slice():
    image, labels = make_brightfield_slice((160, 200), rng=0)
    assert image.shape == (160, 200, 3) and image.dtype == np.uint8
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) == {0, 1}
    grey = image.mean(axis=-1)
    assert grey[labels == 1].mean() < grey[labels == 0].mean()
    again, _ = make_brightfield_slice((160, 200), rng=0)
    np.testing.assert_array_equal(image, again)


def test_brightfield_is_not_solved_by_a_threshold():
    image, labels = make_brightfield_slice((256, 256), rng=1)
    grey = image.mean(axis=-1)
    best = max(
        ((grey < t) == labels.astype(bool)).mean() for t in np.percentile(grey, range(5, 96, 5))
    )
    assert best < 0.95


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_egg_chamber_slice((0, 10)), "shape"),
        (lambda: make_egg_chamber_slice((10, 10, 3)), "shape"),
        (lambda: make_egg_chamber_slice((10, 10), channels=2), "channels"),
        (lambda: make_egg_chamber_stack((10, 10)), "shape"),
        (lambda: make_brightfield_slice((10,)), "shape"),
    ],
)
def test_bad_arguments_raise_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_import_needs_no_gui():
    code = (
        "import sys, napari_fcnseg.training.synthetic, napari_fcnseg._sample_data;"
        "bad = [m for m in ('qtpy', 'napari', 'magicgui') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_glow_and_a_wider_psf_spread_the_stain_past_the_labels():
    from scipy import ndimage as ndi

    from napari_fcnseg.training.synthetic import CONFOCAL, SHARP, Optics

    def outside_share(image, labels):
        """Mean brightness 2-4 px outside the chambers, relative to the first 3 px inside."""
        egg = labels > 0
        outside, inside = ndi.distance_transform_edt(~egg), ndi.distance_transform_edt(egg)
        pixels = image.max(axis=-1).astype(float)
        band = (outside >= 2) & (outside <= 4)
        return pixels[band].mean() / pixels[egg & (inside <= 3)].mean()

    sharp_image, sharp_labels = make_egg_chamber_slice((256, 256), rng=3)
    np.testing.assert_array_equal(
        sharp_image, make_egg_chamber_slice((256, 256), rng=3, optics=SHARP)[0]
    )
    wide = Optics(psf_sigma=(3.0, 4.0), glow=(0.3, 0.5))
    image, labels = make_egg_chamber_slice((256, 256), rng=3, optics=wide)
    np.testing.assert_array_equal(labels, sharp_labels)  # the optics leave the labels alone
    assert outside_share(image, labels) > 1.5 * outside_share(sharp_image, sharp_labels)
    assert SHARP.tag == "" and CONFOCAL.tag == "psf1.5-4.5-glow0.1-0.5"
