"""An annotated set survives processes killed mid-add and two processes adding at once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_fcnseg.errors import InputError
from napari_fcnseg.training import _set_journal
from napari_fcnseg.training.dataset import MANIFEST, AnnotatedSet

CLASSES = ["background", "fg"]

# Adds items in a loop. Item i is (16 + 8 * (i % 3)) px high, every pixel of its image is i % 200,
# its labels are all (i % 200) % 2 and its corrected mask (every 4th item has none) equals its
# labels: a reader can tell whether an item's files belong to the same add.
WRITER = r"""
import sys
from pathlib import Path

import numpy as np

from napari_fcnseg.training.dataset import AnnotatedSet

folder, prefix, count, modulo, start, go = sys.argv[1:7]
annotated = AnnotatedSet.create(folder, ["background", "fg"])
Path(start).touch()
while not Path(go).exists():
    pass
for i in range(int(count)):
    size = 16 + 8 * (i % 3)
    value = i % 200
    image = np.full((size, size + 4), value, np.uint8)
    labels = np.full((size, size + 4), value % 2, np.uint8)
    mask = labels.astype(bool) if i % 4 else None
    name = f"{prefix}{i % int(modulo) if int(modulo) else i}"
    annotated.add_item(image, labels, mask, name=name)
"""


def _writer(folder: Path, prefix: str, count: int, modulo: int, tag: str) -> tuple:
    start, go = folder.parent / f"{tag}.started", folder.parent / "go"
    arguments = [str(folder), prefix, str(count), str(modulo), str(start), str(go)]
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, start, go


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"writer exited early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("writer did not start in time")
        time.sleep(0.02)


def _check_consistent(folder: Path) -> AnnotatedSet:
    annotated = AnnotatedSet.open(folder)
    assert not (folder / _set_journal.STAGING).exists()  # an interrupted add was finished
    for item in annotated.items:
        sample = annotated.load_sample(item.name)
        value = int(sample.image.flat[0])
        assert (sample.image == value).all()
        assert sample.labels.shape == sample.image.shape[:2]
        assert (sample.labels == value % 2).all(), f"{item.name}: labels of another add"
        if item.corrected is None:
            assert sample.corrected is None
        else:
            np.testing.assert_array_equal(sample.corrected, sample.labels.astype(bool))
    return annotated


@pytest.mark.slow
def test_set_survives_writers_killed_mid_add(tmp_path):
    folder = tmp_path / "set"
    (tmp_path / "go").touch()
    delays = random.Random(20240607)
    seen = 0
    for kill in range(5):
        process, start, _ = _writer(folder, "item", 100_000, 5, f"w{kill}")
        _wait_for(start, process)
        time.sleep(delays.uniform(0.05, 0.8))
        assert process.poll() is None, process.stderr.read().decode()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
        start.unlink()
        seen = max(seen, len(_check_consistent(folder)))
    assert seen >= 2  # the writers got far enough to add (and update) items


@pytest.mark.slow
def test_two_writers_at_once_keep_both_items(tmp_path):
    folder = tmp_path / "set"
    AnnotatedSet.create(folder, CLASSES)
    writers = [_writer(folder, prefix, 8, 0, prefix) for prefix in "ab"]
    for process, start, _ in writers:
        _wait_for(start, process)
    (tmp_path / "go").touch()  # both start adding at the same moment
    for process, _, _ in writers:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    annotated = _check_consistent(folder)
    assert sorted(it.name for it in annotated.items) == sorted(
        f"{p}{i}" for p in "ab" for i in range(8)
    )


def test_add_interrupted_after_commit_is_finished_on_open(tmp_path, monkeypatch):
    annotated = AnnotatedSet.create(tmp_path, CLASSES)
    annotated.add_item(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="a")
    real_replace = os.replace
    moves = []

    def killed_after_first_move(src, dst):
        if moves:
            raise KeyboardInterrupt  # as if the process died between two moves
        moves.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(_set_journal.os, "replace", killed_after_first_move)
    with pytest.raises(KeyboardInterrupt):
        annotated.add_item(np.full((12, 10), 7, np.uint8), np.ones((12, 10), np.uint8), name="a")
    monkeypatch.undo()
    assert [Path(m).name for m in moves] == ["a.tif"]  # the new image is in place, labels not
    (sample,) = AnnotatedSet.open(tmp_path).load_samples()
    assert sample.image.shape == (12, 10) and (sample.labels == 1).all()
    assert not (tmp_path / _set_journal.STAGING).exists()


def test_add_interrupted_before_commit_leaves_the_set_as_it_was(tmp_path, monkeypatch):
    from napari_fcnseg.training import dataset

    annotated = AnnotatedSet.create(tmp_path, CLASSES)
    annotated.add_item(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="a")
    before = (tmp_path / MANIFEST).read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "write_labels", killed)
    with pytest.raises(KeyboardInterrupt):
        annotated.add_item(np.ones((8, 8), np.uint8), np.ones((8, 8), np.uint8), name="a")
    monkeypatch.undo()
    assert (tmp_path / MANIFEST).read_text() == before
    (sample,) = AnnotatedSet.open(tmp_path).load_samples()
    assert (sample.labels == 0).all() and (sample.image == 0).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", MANIFEST, "images", "labels"]


def test_a_set_object_sees_items_other_processes_added(tmp_path):
    first = AnnotatedSet.create(tmp_path, CLASSES)
    second = AnnotatedSet.open(tmp_path)
    first.add_item(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="a")
    second.add_item(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="b")
    assert [it.name for it in AnnotatedSet.open(tmp_path).items] == ["a", "b"]


def test_crafted_commit_record_cannot_touch_files_outside_the_set(tmp_path):
    folder = tmp_path / "set"
    AnnotatedSet.create(folder, CLASSES).add_item(
        np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="a"
    )
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    staging = folder / _set_journal.STAGING / "x"
    staging.mkdir(parents=True)
    (staging / "payload").write_text("evil")
    record = {
        "moves": [["payload", "../victim.txt"]],
        "manifest": MANIFEST,
        "manifest_text": "{}",
        "deletions": ["../victim.txt"],
    }
    (staging / _set_journal.COMMIT).write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"outside the set.*delete"):
        AnnotatedSet.open(folder)
    assert victim.read_text() == "keep me"
    assert json.loads((folder / MANIFEST).read_text())["items"][0]["name"] == "a"


@pytest.mark.parametrize(
    ("field", "value"),
    [("corrected", "../victim.tif"), ("image", "/etc/passwd"), ("name", "../a")],
)
def test_crafted_manifest_entries_are_refused(tmp_path, field, value):
    AnnotatedSet.create(tmp_path, CLASSES).add_item(
        np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), name="a"
    )
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["items"][0][field] = value
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"outside the set|not usable"):
        AnnotatedSet.open(tmp_path)
