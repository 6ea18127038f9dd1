"""The bundled model's recipe: its settings, and that a re-run repeats it exactly."""

import numpy as np
import pytest
import torch

from napari_fcnseg.errors import InputError
from napari_fcnseg.training import egg_recipe as recipe
from tests.helpers import disks


def _run(job):
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def test_the_recipe_keeps_its_settings():
    for config in (recipe.pretrain_config(), recipe.finetune_config()):
        assert config.legacy_elastic and not config.recalibrate_batchnorm
        assert config.precision == "float32" and not config.channels_last


def test_both_variants_of_the_recipe_draw_two_confocal_slices_to_one_sharp():
    from napari_fcnseg.training.synthetic import CONFOCAL, SHARP

    assert recipe.recipe_optics() == (CONFOCAL, SHARP, CONFOCAL)
    assert recipe.recipe_optics(structure=True) == (CONFOCAL, SHARP, CONFOCAL)
    mixed = recipe.synthetic_egg_samples(4, seed=0, shape=(64, 96))
    assert [s.name for s in mixed] == [
        f"synthetic-0-0-{CONFOCAL.tag}",
        "synthetic-0-1",
        f"synthetic-0-2-{CONFOCAL.tag}",
        f"synthetic-0-3-{CONFOCAL.tag}",
    ]
    sharp = recipe.synthetic_egg_samples(1, seed=0, shape=(64, 96), optics=SHARP)[0]
    glowing = recipe.synthetic_egg_samples(1, seed=0, shape=(64, 96), optics=CONFOCAL)[0]
    assert np.array_equal(mixed[0].image, glowing.image)
    assert np.array_equal(glowing.labels, sharp.labels)
    assert not np.array_equal(glowing.image, sharp.image)


def test_initial_weights_come_from_the_seed_not_the_global_generator():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = recipe.egg_chamber_model(0).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's generator untouched
    torch.rand(10)
    again = recipe.egg_chamber_model(0).state_dict()
    other = recipe.egg_chamber_model(1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["unet.encoders.0.0.weight"], other["unet.encoders.0.0.weight"])


@pytest.fixture
def miniature(monkeypatch):
    """The whole recipe in miniature: tiny synthetic slices, two steps per stage."""
    monkeypatch.setattr(recipe, "SYNTHETIC_SHAPE", (64, 96))
    monkeypatch.setattr(recipe, "SYNTHETIC_TRAIN", 2)
    monkeypatch.setattr(recipe, "SYNTHETIC_VAL", 1)
    monkeypatch.setattr(recipe, "PRETRAIN_STEPS", 2)
    monkeypatch.setattr(recipe, "FINETUNE_STEPS", 2)
    return [disks(0, size=80), disks(1, size=80)]


def _equal(a, b):
    first, second = a.state_dict(), b.state_dict()
    return all(torch.equal(first[k], second[k]) for k in first)


def test_a_rerun_of_the_recipe_gives_the_same_weights(miniature):
    models = []
    for global_seed in (1, 2):  # whatever the caller's generator holds
        torch.manual_seed(global_seed)
        models.append(_run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu")).model)
    assert _equal(*models)


def test_stage_by_stage_equals_one_call(miniature):
    # scripts/train_default_model.py runs the stages one by one to keep the first.
    whole = _run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu")).model
    stage1 = _run(recipe.pretrain_egg_chamber_model(seed=0, device="cpu")).model
    staged = recipe.train_egg_chamber_model(miniature, seed=0, device="cpu", pretrained=stage1)
    assert _equal(whole, _run(staged).model)


def test_a_probe_changes_both_stages_and_only_when_asked(miniature):
    changes = {"channel_noise": True, "learning_rate": 1e-4}
    probe = _run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu", changes=changes))
    config = probe.model.info.provenance["config"]
    assert config["channel_noise"] and config["learning_rate"] == 1e-4
    stage1 = _run(recipe.pretrain_egg_chamber_model(seed=0, device="cpu", changes=changes))
    assert stage1.model.info.provenance["config"]["channel_noise"]
    plain = _run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu")).model
    assert not plain.info.provenance["config"]["channel_noise"]


def test_the_structure_variant_keeps_the_four_classes(miniature):
    model = recipe.egg_chamber_model(0, structure=True)
    assert model.info.class_names == recipe.STRUCTURE_CLASS_NAMES and model.info.num_classes == 4
    synthetic = recipe.synthetic_egg_samples(2, seed=0, structure=True)
    eggs = recipe.synthetic_egg_samples(
        2, seed=0, optics=recipe.recipe_optics(structure=True), tips=recipe.STRUCTURE_TIPS
    )
    assert {int(v) for s in synthetic for v in np.unique(s.labels)} <= {0, 1, 2, 3}
    assert max(int(s.labels.max()) for s in synthetic) > 1  # the inner structures are there
    for four, two in zip(synthetic, eggs):  # the same slices: egg = any structure
        assert np.array_equal(four.labels > 0, two.labels > 0)
    result = _run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu", structure=True))
    assert result.model.info.class_names == recipe.STRUCTURE_CLASS_NAMES
    assert "foreground_threshold" not in result.model.info.provenance  # measured for eggs only


def test_germarium_tips_and_stalks_are_probes_and_the_names_say_so():
    structure = recipe.synthetic_egg_samples(2, seed=0, shape=(64, 96), structure=True)
    eggs = recipe.synthetic_egg_samples(2, seed=0, shape=(64, 96))
    assert all(s.name.endswith("-tips") == recipe.STRUCTURE_TIPS for s in structure)
    assert not any(s.name.endswith("-tips") for s in eggs)
    plain = recipe.synthetic_egg_samples(2, seed=0, shape=(64, 96), tips=False)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(eggs, plain, strict=True))
    probe = recipe.synthetic_egg_samples(2, seed=0, shape=(64, 96), structure=True, tips=True)
    assert all(s.name.endswith("-tips") for s in probe)
    stalked = recipe.synthetic_egg_samples(2, seed=0, shape=(64, 96), stalks=True)
    assert all(s.name.endswith("-stalks") for s in stalked)


def test_a_real_weight_repeats_the_real_slices_more(miniature):
    stage1 = _run(recipe.pretrain_egg_chamber_model(seed=0, device="cpu")).model
    counts = {}
    for weight in (1, 3):
        job = recipe.train_egg_chamber_model(
            miniature, seed=0, device="cpu", pretrained=stage1, real_weight=weight
        )
        data = _run(job).model.info.provenance["data"]
        counts[weight] = sum(not name.startswith("synthetic") for name in data)
    assert counts[3] == 3 * counts[1] and counts[1] >= len(miniature)
    with pytest.raises(InputError, match="real_weight"):
        _run(recipe.train_egg_chamber_model(miniature, seed=0, device="cpu", real_weight=0))


def test_the_egg_model_calls_foreground_only_above_the_recipes_threshold(miniature):
    import copy

    from napari_fcnseg.core.predict import predict_probabilities

    stage1 = _run(recipe.pretrain_egg_chamber_model(seed=0, device="cpu")).model
    assert "foreground_threshold" not in stage1.info.provenance  # the first stage keeps 0.5
    model = _run(
        recipe.train_egg_chamber_model(miniature, seed=0, device="cpu", pretrained=stage1)
    ).model
    threshold = recipe.EGG_FOREGROUND_THRESHOLD
    assert model.info.provenance["foreground_threshold"] == threshold
    raw = copy.deepcopy(model)  # the trained network without the shift
    with torch.no_grad():
        raw.unet.head.bias[0] -= model.info.provenance["background_logit_shift"]
    image = miniature[0].image
    before = _run(predict_probabilities(raw, image, device="cpu"))
    after = _run(predict_probabilities(model, image, device="cpu"))
    clear = np.abs(before[1] - threshold) > 1e-3  # away from the threshold itself
    np.testing.assert_array_equal((after.argmax(0) == 1)[clear], (before[1] > threshold)[clear])


def test_a_foreground_threshold_outside_0_1_is_refused():
    from napari_fcnseg.errors import InputError

    with pytest.raises(InputError, match="between 0 and 1"):
        recipe.shift_foreground_threshold(recipe.egg_chamber_model(), 1.0)
