import numpy as np
import pytest
import torch

from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import InputError
from napari_fcnseg.model.checkpoint import ModelInfo
from napari_fcnseg.training.egg_recipe import STRUCTURE_CLASS_NAMES
from napari_fcnseg.training.finetune import FineTuneSettings, fine_tune
from napari_fcnseg.training.holdout import holdout_mask, split_holdout
from napari_fcnseg.training.replay import (
    REPLAY_KEY,
    SYNTHETIC_EGGS,
    guard_samples,
    replay_samples,
    replay_source,
    synthetic_egg_source,
)
from napari_fcnseg.training.samples import IGNORE_LABEL, TrainingSample
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks, small_model

FAST = dict(batch_size=4, crop=64, device="cpu", holdout_block=16)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- hold-out
def test_holdout_is_stable_per_name_and_never_all():
    labels = np.zeros((100, 130), np.uint8)
    a = holdout_mask(labels, key="img slice 3", block=20, fraction=0.25)
    assert np.array_equal(a, holdout_mask(labels, key="img slice 3", block=20, fraction=0.25))
    assert not np.array_equal(a, holdout_mask(labels, key="img slice 4", block=20, fraction=0.25))
    blocks = 5 * 7
    assert a.sum() > 0 and not a.all()
    # Whole blocks: the share of held-out pixels is near the fraction of blocks.
    assert abs(round(0.25 * blocks) - a[::20, ::20].sum()) == 0


def test_holdout_only_picks_blocks_with_annotated_pixels():
    labels = np.full((64, 64), IGNORE_LABEL, np.uint8)
    labels[:16, :32] = 1  # two annotated blocks of 16 px
    mask = holdout_mask(labels, key="x", block=16, fraction=0.5)
    assert mask.sum() == 16 * 16 and (labels[mask] != IGNORE_LABEL).all()


def test_split_holdout_partitions_the_labels():
    sample = disks(0)
    train, held = split_holdout([sample], block=16, fraction=0.3)
    t, h = train[0].labels, held[0].labels
    assert np.all((t == IGNORE_LABEL) != (h == IGNORE_LABEL))
    assert np.array_equal(np.where(t == IGNORE_LABEL, h, t), sample.labels)
    assert train[0].image is sample.image


def test_split_holdout_keeps_a_one_block_slice_for_training():
    sample = TrainingSample(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8), name="s")
    train, held = split_holdout([sample], block=16)
    assert held == [] and train[0] is sample


# ----------------------------------------------------------------------------- replay
def test_replay_source_of_the_bundled_recipe_and_of_a_set(tmp_path):
    info = ModelInfo(["background", "egg"], 3, {"name": "unet"})
    assert replay_source(info) is None
    info.provenance = {"recipe": "napari_fcnseg.training.egg_recipe"}
    assert replay_source(info) == synthetic_egg_source()
    info.provenance = {"parent": {"stage": "pretrain on synthetic egg chambers"}}
    assert replay_source(info)["kind"] == SYNTHETIC_EGGS
    info.provenance = {"data": str(tmp_path)}
    assert replay_source(info) == {"kind": "annotated set", "path": str(tmp_path)}
    given = {"kind": "annotated set", "path": "/elsewhere"}
    info.provenance = {REPLAY_KEY: given, "recipe": "napari_fcnseg.training.egg_recipe"}
    assert replay_source(info) == given


def test_synthetic_replay_fits_only_rgb_egg_and_structure_models():
    info = ModelInfo(["background", "egg"], 3, {"name": "unet"})
    source = {"kind": SYNTHETIC_EGGS, "seed": 0, "shape": [64, 96]}
    samples = replay_samples(source, info, count=2)
    assert len(samples) == 2 and samples[0].image.shape == (64, 96, 3)
    assert set(np.unique(samples[0].labels)) <= {0, 1}
    grey = ModelInfo(["background", "egg"], 1, {"name": "unet"})
    assert replay_samples(source, grey, count=2) == []
    structure = ModelInfo(list(STRUCTURE_CLASS_NAMES), 3, {"name": "unet"})
    labels = np.concatenate([s.labels.ravel() for s in replay_samples(source, structure, count=2)])
    assert set(np.unique(labels)) == {0, 1, 2, 3}  # the four structures, as the model names them
    other = ModelInfo(["background", "a", "b"], 3, {"name": "unet"})
    assert replay_samples(source, other, count=2) == []
    assert replay_samples({"kind": "annotated set", "path": "/no/such"}, info, count=2) == []


def test_guard_samples_are_never_the_replayed_ones(tmp_path):
    from napari_fcnseg.training.dataset import AnnotatedSet

    info = ModelInfo(["background", "egg"], 3, {"name": "unet"})
    source = {"kind": SYNTHETIC_EGGS, "seed": 0, "shape": [64, 96]}
    replayed = replay_samples(source, info, count=2)
    guard = guard_samples(source, info, count=3)
    assert len(guard) == 3 and guard[0].image.shape == (64, 96, 3)
    assert not {s.name for s in guard} & {s.name for s in replayed}
    assert not np.array_equal(guard[0].image, replayed[0].image)
    # A user's own set: the guard is its validation items, the replay its training items.
    folder = AnnotatedSet.create(tmp_path / "set", ["background", "egg"])
    for i, split in enumerate(["train", "train", "val"]):
        sample = disks(i)
        folder.add_item(sample.image, sample.labels, None, name=f"item{i}", split=split)
    own = {"kind": "annotated set", "path": str(tmp_path / "set")}
    assert [s.name for s in guard_samples(own, info, count=5)] == ["item2"]
    assert [s.name for s in replay_samples(own, info, count=5)] == ["item0", "item1"]
    assert guard_samples(own, info, count=0) == [] and guard_samples(None, info, count=3) == []


# ----------------------------------------------------------------------------- trainer
def test_validate_start_makes_the_start_candidate_zero(toy_train):
    model = small_model()
    # A learning rate this high wrecks the weights: no checkpoint beats the start.
    config = TrainConfig(
        max_steps=6, validate_every=3, learning_rate=50.0, validate_start=True, batch_size=4,
        crop=64, device="cpu", freeze_batchnorm=True,
    )  # fmt: skip
    result = run_to_completion(fit(model, toy_train, [disks(50)], config))
    assert result.history[0]["phase"] == "start" and result.history[0]["step"] == 0
    assert result.start_val_iou == result.history[0]["val_iou"]
    assert not result.improved
    assert _same_weights(result.model, model)
    assert result.candidate is not None and not _same_weights(result.candidate, model)
    assert result.candidate_val_iou < result.start_val_iou


def test_freeze_batchnorm_keeps_the_statistics(toy_train):
    model = small_model()
    config = TrainConfig(max_steps=3, validate_every=100, freeze_batchnorm=True, **_fast())
    trained = run_to_completion(fit(model, toy_train, [], config)).model
    for name, value in model.state_dict().items():
        if "running_" in name:
            assert torch.equal(value, trained.state_dict()[name]), name


def test_l2sp_pulls_toward_the_start(toy_train):
    model = small_model()

    def distance(l2sp):
        config = TrainConfig(max_steps=8, validate_every=100, l2sp=l2sp, **_fast())
        out = run_to_completion(fit(model, toy_train, [], config)).model
        pairs = zip(out.parameters(), model.parameters())
        return sum(float(((p - q) ** 2).sum().detach()) for p, q in pairs)

    assert distance(10.0) < distance(0.0)


def test_encoder_learning_rate_factor_zero_freezes_the_encoder(toy_train):
    model = small_model()
    config = TrainConfig(max_steps=3, validate_every=100, encoder_lr_factor=0.0, **_fast())
    out = run_to_completion(fit(model, toy_train, [], config)).model
    old, new = model.state_dict(), out.state_dict()
    enc = [k for k in old if ".encoders." in f".{k}" and "running" not in k and "num_b" not in k]
    assert enc and all(torch.equal(old[k], new[k]) for k in enc)
    assert not torch.equal(old["unet.head.weight"], new["unet.head.weight"])


@pytest.mark.parametrize("trainable", ["decoder", "norm"])
def test_trainable_updates_only_the_named_weights(toy_train, trainable):
    model = small_model()
    config = TrainConfig(max_steps=3, validate_every=100, trainable=trainable, **_fast())
    out = run_to_completion(fit(model, toy_train, [], config)).model
    old, new = model.state_dict(), out.state_dict()
    weights = [k for k in old if "running" not in k and "num_b" not in k]
    changed = {k for k in weights if not torch.equal(old[k], new[k])}
    assert "unet.head.weight" in changed
    if trainable == "decoder":
        assert not any(".encoders." in f".{k}" for k in changed)
        assert any(".decoders." in f".{k}" for k in changed)
    else:  # only normalisation layers (1-d scales and shifts) and the head
        assert all(new[k].ndim == 1 or k.startswith("unet.head.") for k in changed)
        assert any(".encoders." in f".{k}" for k in changed)
    assert all(p.requires_grad for p in out.parameters())  # free again for the next run
    with pytest.raises(InputError, match="trainable"):
        TrainConfig(trainable="bias").check()


def test_train_weights_choose_where_crops_come_from(toy_train):
    config = TrainConfig(max_steps=1, **_fast())
    with pytest.raises(InputError, match="training weights"):
        run_to_completion(fit(small_model(), toy_train, [], config, train_weights=[1.0]))


def _fast():
    return dict(batch_size=4, crop=64, device="cpu", learning_rate=1e-2)


# ----------------------------------------------------------------------------- policy
def test_fine_tune_improves_and_says_so():
    model = small_model()
    corrections = [disks(i, size=96) for i in range(2)]
    settings = FineTuneSettings(
        max_seconds=None,
        max_steps=40,
        learning_rate=1e-2,
        validate_seconds=0.01,
        freeze_batchnorm=False,
        **FAST,
    )
    outcome = run_to_completion(fine_tune(model, corrections, settings, replay=None))
    assert outcome.improved and outcome.new_score > outcome.start_score
    assert not _same_weights(outcome.model, model) and outcome.candidate is None
    assert outcome.held_out_pixels > 0 and outcome.replayed == 0
    assert "is now active" in outcome.summary()
    assert outcome.confidence is not None and outcome.confidence >= settings.selection_confidence
    provenance = outcome.model.info.provenance
    assert provenance["fine_tune"]["corrections"] == ["disks0", "disks1"]
    assert provenance["validated_on"] == "val"


def test_fine_tune_that_cannot_beat_the_start_keeps_it():
    model = small_model()
    corrections = [disks(i, size=96) for i in range(2)]
    settings = FineTuneSettings(
        max_seconds=None, max_steps=4, learning_rate=50.0, validate_seconds=0.01, **FAST
    )
    guard = [disks(50, size=96)]
    outcome = run_to_completion(fine_tune(model, corrections, settings, replay=None, guard=guard))
    assert not outcome.improved and _same_weights(outcome.model, model)
    assert outcome.candidate is not None and outcome.new_score <= outcome.start_score
    # The start is scored on the guard up front (its time is kept free before the deadline);
    # no checkpoint passed the held-out test, so none was scored there or turned away.
    assert outcome.guard_start is not None and outcome.guard_new is None
    assert not outcome.guard_refused
    text = outcome.summary("v003", "v002")
    assert "v002 stays active" in text and f"{outcome.start_score:.3f}" in text


def test_a_higher_score_that_is_not_sure_keeps_the_start(monkeypatch):
    from napari_fcnseg.training import _run

    # The same round as test_fine_tune_improves_and_says_so, but the bootstrap finds the gain
    # in only 60% of its resamples of the held-out blocks.
    monkeypatch.setattr(_run, "gain_confidence", lambda start, candidate: 0.6)
    model = small_model()
    corrections = [disks(i, size=96) for i in range(2)]
    settings = FineTuneSettings(
        max_seconds=None, max_steps=40, learning_rate=1e-2, validate_seconds=0.01,
        freeze_batchnorm=False, **FAST,
    )  # fmt: skip
    outcome = run_to_completion(fine_tune(model, corrections, settings, replay=None))
    assert not outcome.improved and _same_weights(outcome.model, model)
    assert outcome.new_score > outcome.start_score and outcome.confidence == 0.6
    assert outcome.candidate is not None
    text = outcome.summary("v003", "v002")
    assert "not a sure gain (higher in 60% of resamples" in text and "v002 stays active" in text
    # Without the evidence rule the higher score wins, as before.
    plain = FineTuneSettings(**{**settings.__dict__, "selection_confidence": 0.0})
    assert run_to_completion(fine_tune(model, corrections, plain, replay=None)).improved
    with pytest.raises(InputError, match="selection_confidence"):
        FineTuneSettings(selection_confidence=1.0).check()


def _improving_settings(**changes):
    """The round of test_fine_tune_improves_and_says_so: it beats the start surely."""
    return FineTuneSettings(
        max_seconds=None, max_steps=40, learning_rate=1e-2, validate_seconds=0.01,
        freeze_batchnorm=False, **{**FAST, **changes},
    )  # fmt: skip


def test_a_guard_of_the_same_kind_lets_a_gain_through():
    model = small_model()
    corrections = [disks(i, size=96) for i in range(2)]
    guard = [disks(50 + i, size=96) for i in range(2)]
    job = fine_tune(model, corrections, _improving_settings(), replay=None, guard=guard)
    outcome = run_to_completion(job)
    assert outcome.improved and not outcome.guard_refused
    assert outcome.guard_start is not None and outcome.guard_new is not None
    assert outcome.guard_new >= outcome.guard_start - 0.005
    recorded = outcome.model.info.provenance["fine_tune"]["guard"]
    assert recorded == {"samples": ["disks50", "disks51"], "reference": outcome.guard_start}
    assert "is now active" in outcome.summary()


def test_checkpoint_files_carry_the_chains_guard_reference(tmp_path):
    from napari_fcnseg.model.checkpoint import load_model

    model = small_model()
    corrections = [disks(i, size=96) for i in range(2)]
    guard = [disks(50 + i, size=96) for i in range(2)]
    job = fine_tune(
        model, corrections, _improving_settings(), replay=None, guard=guard,
        checkpoint_dir=tmp_path,
    )  # fmt: skip
    outcome = run_to_completion(job)
    # A chain resumed from a checkpoint file keeps the first model's reference.
    for name in ("latest", "best"):
        saved = load_model(tmp_path / f"{name}.safetensors")
        assert saved.info.provenance["fine_tune"]["guard"]["reference"] == outcome.guard_start


def test_a_gain_that_forgets_the_guard_keeps_the_start(monkeypatch):
    from napari_fcnseg.training import _run

    model = small_model()

    def guard_iou(self, net):  # the start did well on its earlier data; every fine-tune less so
        return 0.90 if _same_weights(net, model) else 0.89

    monkeypatch.setattr(_run.Run, "guard_iou", guard_iou)
    corrections = [disks(i, size=96) for i in range(2)]
    guard = [disks(50, size=96)]
    settings = _improving_settings()
    outcome = run_to_completion(fine_tune(model, corrections, settings, replay=None, guard=guard))
    assert not outcome.improved and outcome.guard_refused and _same_weights(outcome.model, model)
    assert outcome.new_score > outcome.start_score and outcome.candidate is not None
    assert (outcome.guard_start, outcome.guard_new) == (0.90, 0.89)
    text = outcome.summary("v003", "v002")
    assert "fell on the model's earlier training data (0.890, v002 0.900)" in text
    assert "v002 stays active" in text and "fine-tune all weights" in text
    # Within the tolerance the gain is kept; without a guard, too.
    loose = _improving_settings(guard_tolerance=0.02)
    kept = run_to_completion(fine_tune(model, corrections, loose, replay=None, guard=guard))
    assert kept.improved
    plain = run_to_completion(fine_tune(model, corrections, settings, replay=None, guard=None))
    assert plain.improved and plain.guard_start is None
    with pytest.raises(InputError, match="guard_tolerance"):
        FineTuneSettings(guard_tolerance=-0.1).check()
    with pytest.raises(InputError, match="guard_count"):
        FineTuneSettings(guard_count=-1).check()
    with pytest.raises(InputError, match="guard="):
        run_to_completion(fine_tune(model, corrections, settings, replay=None, guard="all"))


def test_losses_on_the_guard_cannot_add_up_over_rounds(monkeypatch):
    from napari_fcnseg.training import _run

    start = small_model()
    known = [(start, 0.900)]  # weights whose guard IoU is known; any others score `other`
    other = [0.896]

    def guard_iou(self, net):
        return next((v for m, v in known if _same_weights(net, m)), other[0])

    monkeypatch.setattr(_run.Run, "guard_iou", guard_iou)
    corrections = [disks(i, size=96) for i in range(2)]
    guard = [disks(50, size=96)]
    settings = _improving_settings()
    first = run_to_completion(fine_tune(start, corrections, settings, replay=None, guard=guard))
    assert first.improved and (first.guard_start, first.guard_new) == (0.900, 0.896)
    assert first.model.info.provenance["fine_tune"]["guard"]["reference"] == 0.900
    # Round 2 starts at 0.896 and its checkpoints score 0.894: within the tolerance of the
    # start, but below the first version's 0.900 minus it, so round 2 keeps its start.
    known.append((first.model, 0.896))
    other[0] = 0.894
    second = run_to_completion(
        fine_tune(first.model, corrections, settings, replay=None, guard=guard)
    )
    assert second.guard_reference == 0.900 and second.guard_start == 0.896
    assert not second.improved and second.guard_refused
    assert "(0.894, the start 0.896, the first version 0.900)" in second.summary()
    # Another guard has no recorded reference: the start is the only one then.
    elsewhere = [disks(70, size=96)]
    third = run_to_completion(
        fine_tune(first.model, corrections, settings, replay=None, guard=elsewhere)
    )
    assert third.guard_reference is None and third.improved


def test_the_automatic_guard_comes_from_the_replay_source_and_skips_corrections(monkeypatch):
    from napari_fcnseg.training import finetune

    model = small_model()
    model.info.provenance = {REPLAY_KEY: {"kind": SYNTHETIC_EGGS, "seed": 0, "shape": [64, 64]}}
    drawn = [disks(0, size=96), disks(60, size=96)]  # the first has a corrected slice's name
    asked = {}

    def fake_guard(source, info, *, count):
        asked.update(source=source, count=count)
        return drawn

    monkeypatch.setattr(finetune, "guard_samples", fake_guard)
    settings = FineTuneSettings(max_seconds=None, max_steps=1, guard_count=4, **FAST)
    outcome = run_to_completion(fine_tune(model, [disks(0, size=96)], settings, replay=None))
    assert asked == {"source": model.info.provenance[REPLAY_KEY], "count": 4}
    assert outcome.trained.info.provenance["fine_tune"]["guard"]["samples"] == ["disks60"]
    # By default six, and none where every weight learns (a new imaging mode: forgetting the
    # old data is the point there).
    assert FineTuneSettings().guard_size() == 6
    assert FineTuneSettings(trainable="all").guard_size() == 0
    assert FineTuneSettings(trainable="all", guard_count=2).guard_size() == 2
    settings = FineTuneSettings(max_seconds=None, max_steps=1, trainable="all", **FAST)
    run_to_completion(fine_tune(model, [disks(0, size=96)], settings, replay=None))
    assert asked["count"] == 0


def test_fine_tune_replays_and_records_the_source():
    model = small_model()
    replay = [disks(10 + i, size=64) for i in range(3)]
    settings = FineTuneSettings(max_seconds=None, max_steps=2, replay_fraction=0.5, **FAST)
    outcome = run_to_completion(fine_tune(model, [disks(0, size=96)], settings, replay=replay))
    assert outcome.replayed == 3
    assert outcome.model.info.provenance[REPLAY_KEY]["kind"] == "given"
    with pytest.raises(InputError, match="replay_fraction"):
        FineTuneSettings(replay_fraction=1.0).check()


def test_fine_tune_needs_corrections_large_enough_to_hold_out():
    tiny = TrainingSample(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8), name="t")
    with pytest.raises(InputError, match="too small"):
        run_to_completion(fine_tune(small_model(), [tiny], FineTuneSettings(**FAST)))
    with pytest.raises(InputError, match="nothing to fine-tune"):
        run_to_completion(fine_tune(small_model(), [], FineTuneSettings(**FAST)))


def test_holdout_always_holds_out_foreground():
    labels = np.zeros((128, 128), np.uint8)
    labels[60:70, 60:70] = 1  # one small object: most blocks are background only
    for key in ("a", "b", "c", "d"):
        mask = holdout_mask(labels, key=key, block=16, fraction=0.2)
        assert (labels[mask] > 0).any(), key


def test_interpolation_returns_weights_between_start_and_trained(toy_train):
    model = small_model()
    settings = dict(max_steps=3, validate_every=3, freeze_batchnorm=True, **_fast())
    plain = run_to_completion(fit(model, toy_train, [], TrainConfig(**settings))).model
    half = TrainConfig(**settings, interpolation=0.5)
    between = run_to_completion(fit(model, toy_train, [], half)).model
    start, end, mid = (dict(m.named_parameters()) for m in (model, plain, between))
    for name in start:
        expected = start[name] + 0.5 * (end[name] - start[name])
        assert torch.allclose(mid[name], expected, atol=1e-6), name


def test_ema_weights_are_validated_and_returned(toy_train):
    model = small_model()
    settings = dict(max_steps=4, validate_every=4, freeze_batchnorm=True, **_fast())
    plain = run_to_completion(fit(model, toy_train, [], TrainConfig(**settings))).model
    ema = run_to_completion(fit(model, toy_train, [], TrainConfig(**settings, ema_decay=0.5)))
    start, end, avg = (dict(m.named_parameters()) for m in (model, plain, ema.model))
    name = "unet.head.weight"
    # An average of the path from the start: neither the start nor the last weights.
    assert not torch.allclose(avg[name], start[name]) and not torch.allclose(avg[name], end[name])
    with pytest.raises(InputError, match="ema_decay"):
        TrainConfig(ema_decay=1.0).check()
    with pytest.raises(InputError, match="interpolation"):
        TrainConfig(interpolation=0.0).check()


def test_a_budget_too_short_to_train_keeps_the_start():
    model = small_model()
    settings = FineTuneSettings(max_seconds=0.001, **FAST)
    outcome = run_to_completion(fine_tune(model, [disks(0, size=96)], settings, replay=None))
    assert outcome.steps == 0 and not outcome.improved and outcome.new_score is None
    assert _same_weights(outcome.model, model) and outcome.candidate is None
    assert "no fine-tuned checkpoint was scored" in outcome.summary()


def test_channels_last_only_where_bfloat16_is_native():
    from napari_fcnseg.core.device import training_precision

    settings = FineTuneSettings(device="cpu").train_config()
    native = training_precision("auto", torch.device("cpu")) == torch.bfloat16
    assert settings.channels_last is native
    assert settings.validate_start and settings.freeze_batchnorm
    assert not settings.recalibrate_batchnorm


def _two_kinds_of_disks(seed: int, size: int = 96) -> TrainingSample:
    """Bright disks (label 1) and dim disks (label 2) on a dark, noisy background.

    Told apart by brightness, not colour: training permutes the channels of RGB images.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint8)
    for i in range(6):
        cy, cx = rng.integers(12, size - 12, 2).tolist()
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < int(rng.integers(8, 14)) ** 2] = 1 + i % 2
    brightness = np.array([50, 230, 140])[labels]
    image = (brightness[..., None] + rng.normal(0, 15, (size, size, 3))).clip(0, 255)
    return TrainingSample(image.astype(np.uint8), labels, name=f"two-kinds{seed}")


def test_a_model_of_three_classes_fine_tunes_by_its_class_iou():
    from napari_fcnseg.core.metrics import foreground_scores
    from tests.helpers import make_tiny_model

    model = make_tiny_model(num_classes=3)
    corrections = [_two_kinds_of_disks(i) for i in range(2)]
    settings = FineTuneSettings(
        max_seconds=None, max_steps=60, learning_rate=3e-3, validate_seconds=0.01,
        freeze_batchnorm=False, trainable="all", interpolation=1.0, **FAST,
    )  # fmt: skip
    outcome = run_to_completion(fine_tune(model, corrections, settings, replay=None))
    assert outcome.improved and outcome.new_score > outcome.start_score

    def class_iou(net):
        unseen = _two_kinds_of_disks(5)
        probs = run_to_completion(predict_probabilities(net, unseen.image))
        return foreground_scores(probs.argmax(0), unseen.labels)["class_iou"]

    assert class_iou(outcome.model) > class_iou(model) + 0.2
    assert outcome.model.info.class_names == model.info.class_names
