import datetime as dt
import json

import numpy as np
import pytest
from skimage import io as skio

from napari_fcnseg.errors import InputError, OutputExistsError
from napari_fcnseg.training import dataset as ds
from napari_fcnseg.training._set_files import auto_splits, name_fraction
from napari_fcnseg.training.dataset import IGNORE_LABEL, MANIFEST, AnnotatedSet

NAMES = ["background", "follicle", "nuclei"]


def _arrays(seed=0, shape=(20, 30)):
    r = np.random.default_rng(seed)
    image = r.integers(0, 255, (*shape, 3), dtype=np.uint8)
    labels = r.integers(0, 3, shape).astype(np.uint8)
    labels[:2] = IGNORE_LABEL
    return image, labels


def test_round_trip_and_manifest_fields(tmp_path):
    s = AnnotatedSet.create(tmp_path / "set", NAMES)
    image, labels = _arrays()
    corrected = np.zeros(labels.shape, bool)
    corrected[5:8, 5:9] = True
    item = s.add_item(
        image, labels, corrected, name="a", source="/x/stack.tif", slice_index=4, model_version="v3"
    )
    assert item.corrected_pixels == 12
    reopened = AnnotatedSet.open(tmp_path / "set")
    assert reopened.class_names == NAMES and len(reopened) == 1 and "a" in reopened
    (sample,) = reopened.load_samples()
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.labels, labels)
    np.testing.assert_array_equal(sample.corrected, corrected)
    raw = json.loads((tmp_path / "set" / MANIFEST).read_text())
    assert raw["format_version"] == 1 and raw["class_names"] == NAMES
    entry = raw["items"][0]
    assert entry["image"] == "images/a.tif" and entry["labels"] == "labels/a.tif"
    assert entry["corrected"] == "corrected/a.tif"
    assert (entry["source"], entry["slice_index"], entry["model_version"]) == (
        "/x/stack.tif",
        4,
        "v3",
    )
    assert dt.datetime.fromisoformat(entry["added"]).utcoffset() == dt.timedelta(0)
    assert entry["split"] in ("train", "val")


def test_update_replaces_not_duplicates(tmp_path):
    s = AnnotatedSet.create(tmp_path, NAMES)
    image, labels = _arrays()
    first = s.add_item(image, labels, np.ones(labels.shape, bool), name="a")
    second = s.add_item(image, np.zeros_like(labels), name="a")
    assert len(s) == 1 and len(AnnotatedSet.open(tmp_path)) == 1
    assert second.added == first.added and second.updated >= first.updated
    assert second.corrected is None and not (tmp_path / "corrected" / "a.tif").exists()
    assert AnnotatedSet.open(tmp_path).load_samples()[0].labels.max() == 0
    with pytest.raises(OutputExistsError):
        s.add_item(image, labels, name="a", replace=False)


def test_added_on_counts_today(tmp_path):
    s = AnnotatedSet.create(tmp_path, NAMES)
    for name in "abc":
        s.add_item(*_arrays(), name=name)
    assert len(s.added_on()) == 3
    assert s.added_on(dt.date(2001, 1, 1)) == []


def test_failure_mid_add_keeps_previous_manifest(tmp_path, monkeypatch):
    s = AnnotatedSet.create(tmp_path, NAMES)
    image, labels = _arrays()
    s.add_item(image, labels, name="a")
    before = (tmp_path / MANIFEST).read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ds, "write_labels", broken)
    with pytest.raises(OSError):
        s.add_item(image, np.zeros_like(labels), name="a")  # update
    with pytest.raises(OSError):
        s.add_item(image, labels, name="b")  # new item
    assert (tmp_path / MANIFEST).read_text() == before
    reopened = AnnotatedSet.open(tmp_path)
    assert [it.name for it in reopened.items] == ["a"]
    np.testing.assert_array_equal(reopened.load_samples()[0].labels, labels)  # old labels kept
    assert not (tmp_path / "images" / "b.tif").exists()


def test_create_refuses_foreign_folder_and_open_non_set(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="not an empty folder"):
        AnnotatedSet.create(tmp_path, NAMES)
    with pytest.raises(InputError, match="not an annotated set"):
        AnnotatedSet.open(tmp_path)
    with pytest.raises(InputError, match="class names"):
        AnnotatedSet.create(tmp_path / "new", ["only"])


def test_bad_items_are_refused(tmp_path):
    s = AnnotatedSet.create(tmp_path, NAMES)
    image, labels = _arrays()
    with pytest.raises(InputError, match="classes"):
        s.add_item(image, np.full_like(labels, 7), name="a")
    with pytest.raises(InputError, match="shaped"):
        s.add_item(image, labels[:5], name="a")
    with pytest.raises(InputError, match="not usable"):
        s.add_item(image, labels, name="../evil")
    assert len(AnnotatedSet.open(tmp_path)) == 0


def test_split_rule_deterministic_and_has_val():
    names = [f"slice{i:03d}" for i in range(200)]
    splits = auto_splits(names, {})
    assert splits == auto_splits(list(reversed(names)), {})
    assert 0.12 < sum(v == "val" for v in splits.values()) / len(names) < 0.28
    assert all((splits[n] == "val") == (name_fraction(n) < 0.2) for n in names)
    train_only = [n for n in names if name_fraction(n) >= 0.2][:2]
    assert sorted(auto_splits(train_only, {}).values()) == ["train", "val"]
    assert auto_splits(train_only[:1], {}) == {train_only[0]: "train"}
    assert auto_splits(train_only, {train_only[0]: "train", train_only[1]: "train"}) == {
        train_only[0]: "train",
        train_only[1]: "train",
    }


def test_set_keeps_explicit_split_and_loads_by_split(tmp_path):
    s = AnnotatedSet.create(tmp_path, NAMES)
    for i in range(6):
        s.add_item(*_arrays(i), name=f"n{i}", split="train" if i else "val")
    s = AnnotatedSet.open(tmp_path)
    assert [x.name for x in s.load_samples("val")] == ["n0"]
    assert len(s.load_samples("train")) == 5
    with pytest.raises(InputError):
        s.load_samples("test")


def test_plain_folder_pair(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(3):
        image, labels = _arrays(i)
        skio.imsave(tmp_path / "images" / f"im{i}.png", image, check_contrast=False)
        skio.imsave(tmp_path / "labels" / f"im{i}.png", labels, check_contrast=False)
    s = AnnotatedSet.open(tmp_path)
    assert s.plain and len(s) == 3 and s.class_names == ["background", "class 1", "class 2"]
    assert {it.split for it in s.items} == {"train", "val"}
    assert s.load_samples()[0].image.shape == (20, 30, 3)
    with pytest.raises(InputError, match="read-only"):
        s.add_item(*_arrays(), name="x")
    (tmp_path / "images" / "lonely.png").write_bytes(b"")
    with pytest.raises(InputError, match="no labels"):
        AnnotatedSet.open(tmp_path)
