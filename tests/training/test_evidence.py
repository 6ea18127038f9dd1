import numpy as np
import pytest

from napari_fcnseg.training.evidence import block_counts, gain_confidence


def _square(size=256, inset=40, cut=0):
    mask = np.zeros((size, size), np.uint8)
    mask[inset : size - inset, inset : size - inset] = 1
    if cut:
        mask[inset : size - inset, inset : inset + cut] = 0  # a sliver missed along one edge
    return mask


def test_block_counts_add_up_to_the_whole_image_and_skip_unannotated_blocks():
    truth = _square(250)
    prediction = _square(250, cut=5)
    valid = np.ones(truth.shape, bool)
    valid[:, 200:] = False  # the right-hand blocks hold no annotated pixel
    counts = block_counts(prediction, truth, valid, 64)
    assert counts.shape == (4 * 4, 2)  # 4 x 4 blocks of 64 px reach the annotated columns
    inside = valid & ((prediction > 0) | (truth > 0))
    assert counts[:, 1].sum() == inside.sum()
    assert counts[:, 0].sum() == (valid & (prediction > 0) & (truth > 0)).sum()


def test_a_gain_spread_over_many_blocks_is_sure_and_a_tie_is_not():
    rng = np.random.default_rng(0)
    truth = (rng.random((512, 512)) < 0.5).astype(np.uint8)
    worse = truth.copy()
    worse[rng.random(truth.shape) < 0.1] = 0  # misses 10% of the foreground in every block
    valid = np.ones(truth.shape, bool)
    start = block_counts(worse, truth, valid, 64)
    better = block_counts(truth, truth, valid, 64)
    assert gain_confidence(start, better) > 0.99
    assert gain_confidence(better, start) == 0.0
    assert gain_confidence(start, start) == 0.0


def test_a_gain_in_one_block_and_a_loss_in_another_is_not_sure():
    truth = _square(512, inset=8)
    valid = np.ones(truth.shape, bool)
    start_mask, candidate_mask = truth.copy(), truth.copy()
    start_mask[8:40, 8:40] = 0  # the start misses one corner ...
    candidate_mask[472:504, 476:504] = 0  # ... the candidate a slightly smaller other one
    start = block_counts(start_mask, truth, valid, 64)
    candidate = block_counts(candidate_mask, truth, valid, 64)
    # Higher pooled IoU, but the resamples that hold only one of the two blocks disagree.
    assert 0.4 < gain_confidence(start, candidate) < 0.8


def test_blocks_where_both_models_agree_neither_help_nor_hide_a_gain():
    truth = _square(256, inset=100)  # foreground in the middle blocks only
    valid = np.ones(truth.shape, bool)
    start = block_counts(np.zeros_like(truth), truth, valid, 64)  # finds nothing
    candidate = block_counts(truth, truth, valid, 64)
    # Most blocks are background that both leave empty: every resample that differs is a gain.
    assert gain_confidence(start, candidate) == 1.0


def test_gain_confidence_needs_the_same_blocks():
    assert gain_confidence(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
    with pytest.raises(ValueError, match="differ"):
        gain_confidence(np.zeros((3, 2)), np.zeros((4, 2)))


def test_validation_counts_the_blocks_the_hold_out_cuts():
    import torch

    from napari_fcnseg.training._validation import validate
    from napari_fcnseg.training.holdout import block_side
    from napari_fcnseg.training.samples import prepare_sample
    from tests.helpers import disks, small_model

    model = small_model()
    sample = disks(0, size=96)
    target = prepare_sample(sample, 3, model.info.normalization)
    scores = validate(model, [sample], [target], torch.device("cpu"), block=128)
    # 128 px blocks on a 96 px slice: the hold-out cuts it into 24 px blocks, 4 x 4 of them.
    assert block_side((96, 96), 128) == 24
    assert scores["blocks"].shape == (16, 2)
    assert scores["blocks"][:, 1].sum() >= (sample.labels > 0).sum()  # the union holds the truth


def test_class_counts_need_the_same_class_and_match_the_foreground_for_two():
    truth = np.zeros((128, 128), np.uint8)
    truth[20:100, 20:60], truth[20:100, 60:100] = 1, 2
    swapped = np.where(truth > 0, 3 - truth, 0).astype(np.uint8)  # right place, wrong classes
    valid = np.ones(truth.shape, bool)
    fg = block_counts(swapped, truth, valid, 64)
    by_class = block_counts(swapped, truth, valid, 64, classes=True)
    assert fg[:, 0].sum() == (truth > 0).sum()  # the foreground alone looks perfect
    assert by_class[:, 0].sum() == 0  # no pixel has the right class
    assert by_class[:, 1].sum() == 2 * (truth > 0).sum()
    binary = (truth > 0).astype(np.uint8)
    shifted = np.roll(binary, 7, axis=1)
    np.testing.assert_array_equal(
        block_counts(shifted, binary, valid, 64, classes=True),
        block_counts(shifted, binary, valid, 64),
    )


def test_a_model_of_more_classes_is_validated_by_its_class_iou():
    import torch

    from napari_fcnseg.training._validation import validate
    from napari_fcnseg.training.samples import TrainingSample, prepare_sample
    from tests.helpers import make_tiny_model

    model = make_tiny_model(num_classes=3)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (64, 64)).astype(np.uint8)
    sample = TrainingSample(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), labels)
    target = prepare_sample(sample, 3, model.info.normalization)
    scores = validate(model, [sample], [target], torch.device("cpu"), block=32)
    assert scores["iou"] == scores["class_iou"]
    counts = scores["blocks"]
    with torch.no_grad():
        from napari_fcnseg.core.predict import predict_probabilities
        from napari_fcnseg.core.progress import run_to_completion

        prediction = run_to_completion(predict_probabilities(model, sample.image)).argmax(0)
    assert counts[:, 0].sum() == ((prediction == labels) & (labels > 0)).sum()


def test_a_fine_tune_scores_the_labels_a_user_sees_holes_filled(trained_tiny_model):
    import copy

    import torch

    from napari_fcnseg.training._validation import validate
    from napari_fcnseg.training.config import FineTuneSettings
    from napari_fcnseg.training.samples import TrainingSample, prepare_sample
    from tests.helpers import ring

    assert FineTuneSettings(max_steps=1).train_config().labels_as_seen
    model = copy.deepcopy(trained_tiny_model)
    model.info.fill_holes = True
    image, _ = ring()
    yy, xx = np.mgrid[:64, :64]
    disk = ((yy - 32) ** 2 + (xx - 32) ** 2 < (64 // 3) ** 2).astype(np.uint8)
    sample = TrainingSample(image, disk)
    target = prepare_sample(sample, 3, model.info.normalization)
    args = (model, [sample], [target], torch.device("cpu"))
    seen, argmax = validate(*args, as_seen=True), validate(*args)
    assert seen["iou"] > argmax["iou"]  # the hole counts against the argmax only
    model.info.fill_holes = False
    assert validate(*args, as_seen=True)["iou"] == argmax["iou"]
