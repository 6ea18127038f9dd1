import time

import numpy as np
import pytest
import torch

from napari_fcnseg.core.device import training_precision
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import InputError
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.training.samples import (
    IGNORE_LABEL,
    TrainingSample,
    prepare_sample,
    samples_from_stack,
)
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks, small_model

FAST = dict(batch_size=4, crop=64, learning_rate=1e-2, device="cpu")


def _events(job):
    events = []
    result = run_to_completion(job, events.append)
    return result, events


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("precision", "channels_last"), [("float32", False), ("bfloat16", True), ("auto", True)]
)
def test_learns_trivial_task(small, toy_train, toy_val, precision, channels_last):
    config = TrainConfig(
        max_steps=60,
        validate_every=20,
        patience=10,
        precision=precision,
        channels_last=channels_last,
        **FAST,
    )
    result, events = _events(fit(small, toy_train, toy_val, config))
    assert result.best_val_iou > 0.9
    assert result.history[0]["val_iou"] < result.best_val_iou
    assert result.steps == 60 and not result.stopped_early
    unet = [e for e in events if e.info["phase"] == "unet"]
    assert [e.step for e in unet] == list(range(1, 61))
    assert all(e.total == 60 for e in unet)
    assert set(unet[0].info) >= {"loss", "val_iou", "phase", "elapsed"}
    assert unet[0].info["val_iou"] is None and unet[-1].info["val_iou"] is not None
    model = result.model
    assert not model.training and next(model.parameters()).device.type == "cpu"
    # Trained channels-last, returned in the usual layout, weights in float32.
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in model.parameters())
    prov = model.info.provenance
    assert prov["steps"] == 60 and prov["seed"] == 0 and prov["val_iou"] == result.best_val_iou
    assert prov["train_samples"] == 4 and prov["validated_on"] == "val"


def test_early_stopping(small, toy_train, toy_val):
    config = TrainConfig(
        max_steps=500,
        validate_every=2,
        patience=2,
        batch_size=2,
        crop=32,
        learning_rate=1e-9,
        device="cpu",
    )
    result, _ = _events(fit(small, toy_train, toy_val, config))
    assert result.stopped_early and result.steps == 6  # best at 2, no gain at 4 and 6


def test_time_budget(small, toy_train, toy_val):
    start = time.monotonic()
    config = TrainConfig(max_seconds=1.5, validate_every=10, **FAST)
    result, events = _events(fit(small, toy_train, toy_val, config))
    assert result.steps > 3 and result.seconds < 3.5 and time.monotonic() - start < 5
    assert events[-1].total >= result.steps


def test_closing_the_generator_leaves_model_untouched(small, toy_train, toy_val):
    before = {k: v.clone() for k, v in small.state_dict().items()}
    job = fit(small, toy_train, toy_val, TrainConfig(max_steps=100, **FAST))
    for _ in range(5):
        next(job)
    job.close()
    after = small.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_weights(toy_train, toy_val):
    config = TrainConfig(max_steps=6, validate_every=3, seed=7, **FAST)
    a = run_to_completion(fit(small_model(), toy_train, toy_val, config)).model
    b = run_to_completion(fit(small_model(), toy_train, toy_val, config)).model
    config.seed = 8
    c = run_to_completion(fit(small_model(), toy_train, toy_val, config)).model
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_checkpoints_written_and_loadable(small, toy_train, toy_val, tmp_path):
    config = TrainConfig(max_steps=6, validate_every=3, **FAST)
    result = run_to_completion(
        fit(small, toy_train, toy_val, config, checkpoint_dir=tmp_path, provenance={"data": "toy"})
    )
    best = load_model(tmp_path / "best.safetensors")
    latest = load_model(tmp_path / "latest.safetensors")
    assert latest.info.provenance["steps"] == 6 and latest.info.provenance["data"] == "toy"
    assert best.info.provenance["val_iou"] == result.best_val_iou
    assert _same_weights(best, result.model)


def test_validates_on_train_when_no_val(small, toy_train):
    result, events = _events(fit(small, toy_train, [], TrainConfig(max_steps=2, **FAST)))
    assert any("validating on the training images" in e.message for e in events)
    assert result.model.info.provenance["validated_on"] == "train"


def test_greyscale_image_for_rgb_model_and_small_images(small):
    samples = [disks(i, size=40, channels=1) for i in range(2)]
    result = run_to_completion(fit(small, samples, samples[:1], TrainConfig(max_steps=2, **FAST)))
    assert result.steps == 2


def test_bad_input_is_refused(small, toy_train):
    bad = TrainingSample(toy_train[0].image, np.full((64, 64), 5, np.uint8), name="bad")
    with pytest.raises(InputError, match="bad: labels contain"):
        next(fit(small, [bad], [], TrainConfig(max_steps=1, **FAST)))
    none = TrainingSample(toy_train[0].image, np.full((64, 64), IGNORE_LABEL, np.uint8))
    with pytest.raises(InputError, match="no annotated"):
        next(fit(small, [none], [], TrainConfig(max_steps=1, **FAST)))
    with pytest.raises(InputError, match="batch_size"):
        next(fit(small, toy_train, [], TrainConfig(max_steps=1, batch_size=0)))
    with pytest.raises(InputError, match="no training images"):
        next(fit(small, [], toy_train, TrainConfig(max_steps=1)))


def test_corrected_only_target():
    sample = disks(0)
    corrected = np.zeros((64, 64), bool)
    corrected[30, 30] = True
    with_mask = TrainingSample(sample.image, sample.labels, corrected)
    target = prepare_sample(
        with_mask, 3, {"method": "percentile"}, corrected_only=True, corrected_margin=3
    ).target
    kept = target != IGNORE_LABEL
    assert kept.sum() == 29  # the disk of radius 3 around the corrected pixel
    assert kept[27, 30] and not kept[26, 30]
    np.testing.assert_array_equal(target[kept], sample.labels[kept])
    target = prepare_sample(
        with_mask, 3, {"method": "percentile"}, corrected_only=True, corrected_margin=0
    ).target
    assert (target != IGNORE_LABEL).sum() == 1
    no_mask = prepare_sample(sample, 3, {"method": "percentile"}, corrected_only=True).target
    assert (no_mask != IGNORE_LABEL).all()  # no mask = fully confirmed


def test_corrected_only_training_runs(small):
    sample = disks(0)
    corrected = np.zeros((64, 64), bool)
    corrected[10:20, 10:20] = True
    masked = TrainingSample(sample.image, sample.labels, corrected, name="m")
    config = TrainConfig(max_steps=3, corrected_only=True, corrected_margin=4, **FAST)
    assert run_to_completion(fit(small, [masked], [], config)).steps == 3
    empty = TrainingSample(sample.image, sample.labels, np.zeros((64, 64), bool))
    with pytest.raises(InputError, match="no annotated"):
        next(fit(small, [empty], [], config))


def test_samples_from_stack():
    image = np.zeros((4, 10, 12, 2), np.uint16)
    labels = np.full((4, 10, 12), IGNORE_LABEL, np.uint8)
    labels[1, 2, 3] = 1
    corrected = np.zeros((4, 10, 12), bool)
    corrected[3, 0, 0] = True
    samples = samples_from_stack(image, labels, corrected)
    assert [s.name for s in samples] == ["slice 1", "slice 3"]
    assert samples[0].image.shape == (10, 12, 2) and samples[1].corrected[0, 0]
    with pytest.raises(InputError):
        samples_from_stack(image, labels[:2])


def test_training_precision_settings():
    cpu = torch.device("cpu")
    assert training_precision("float32", cpu) == torch.float32
    assert training_precision("bfloat16", cpu) == torch.bfloat16
    assert training_precision("auto", cpu) in (torch.float32, torch.bfloat16)
    assert training_precision("auto", torch.device("mps")) == torch.float32
    with pytest.raises(InputError, match="unknown precision 'half'"):
        TrainConfig(precision="half").check()


def test_cosine_schedule(small, toy_train):
    from napari_fcnseg.training.trainer import COSINE_FLOOR, _cosine

    assert _cosine(0.0) == pytest.approx(1.0)
    assert _cosine(0.5) == pytest.approx((1 + COSINE_FLOOR) / 2)
    assert _cosine(1.0) == pytest.approx(COSINE_FLOOR)
    config = TrainConfig(max_steps=8, validate_every=4, schedule="cosine", **FAST)
    result = run_to_completion(fit(small, toy_train, [], config))
    assert result.steps == 8 and result.model.info.provenance["config"]["schedule"] == "cosine"
    with pytest.raises(InputError, match="unknown schedule"):
        TrainConfig(schedule="step").check()


def test_training_at_a_working_scale(toy_train, toy_val, monkeypatch):
    from napari_fcnseg.training import trainer

    shapes = []
    original = trainer.sample_batch

    def recorded(*args, **kwargs):
        x, y = original(*args, **kwargs)
        shapes.append(x.shape[-2:])
        return x, y

    monkeypatch.setattr(trainer, "sample_batch", recorded)
    config = TrainConfig(max_steps=40, validate_every=20, scale=0.5, **FAST)
    result = run_to_completion(fit(small_model(), toy_train, toy_val, config))
    assert set(shapes) == {(32, 32)}  # the 64 px images, halved: crops cannot be larger
    assert result.model.info.scale == 0.5
    assert result.best_val_iou is not None and result.best_val_iou > 0.5  # scored at full size
    # The model predicts at its scale and answers at the image's size.
    probs = run_to_completion(predict_probabilities(result.model, toy_val[0].image, device="cpu"))
    assert probs.shape == (2, 64, 64)


def test_fine_tuning_keeps_the_models_scale_unless_asked(toy_train):
    model = small_model()
    model.info.scale = 0.5
    kept = run_to_completion(fit(model, toy_train, [], TrainConfig(max_steps=2, **FAST)))
    assert kept.model.info.scale == 0.5
    changed = TrainConfig(max_steps=2, scale=1.0, **FAST)
    assert run_to_completion(fit(model, toy_train, [], changed)).model.info.scale == 1.0
    assert model.info.scale == 0.5  # the caller's model is untouched
    with pytest.raises(InputError, match="CRF training needs scale 1"):
        next(fit(model, toy_train, [], TrainConfig(max_steps=2, train_crf=True, **FAST)))
    with pytest.raises(InputError, match="scale"):
        next(fit(model, toy_train, [], TrainConfig(max_steps=2, scale=0.0, **FAST)))
