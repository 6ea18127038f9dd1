import argparse
import json
import sys

import numpy as np
import pytest
import tifffile
import torch
from skimage import io as skio

from napari_fcnseg.cli import add as add_command
from napari_fcnseg.cli import train as train_command
from napari_fcnseg.errors import FcnsegError
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.training.dataset import MANIFEST, AnnotatedSet

COMMANDS = {"train": train_command, "add": add_command}


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fcnseg(*argv: str) -> int:
    """Parse and run like ``fcnseg`` does (errors: one line on stderr, exit code 2)."""
    parser = argparse.ArgumentParser(prog="fcnseg")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(commands)
    args = parser.parse_args([str(a) for a in argv])
    try:
        return COMMANDS[args.command].run(args)
    except FcnsegError as exc:
        print(f"fcnseg: error: {exc}", file=sys.stderr)
        return 2


def _add(set_dir, image, labels, *extra) -> int:
    """Run ``fcnseg add --set SET_DIR --image IMAGE --labels LABELS [EXTRA...]``."""
    return fcnseg("add", "--set", set_dir, "--image", image, "--labels", labels, *extra)


def _pair(folder, name, seed, size=64):
    r = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint8)
    labels[10:30, 15:40] = 1
    labels[40:50, 5:20] = 2
    image = (labels[..., None] * 70 + r.normal(40, 10, (size, size, 3))).clip(0, 255)
    image_path, labels_path = folder / f"{name}.tif", folder / f"{name}_labels.png"
    tifffile.imwrite(image_path, image.astype(np.uint8), photometric="rgb")
    skio.imsave(labels_path, labels, check_contrast=False)
    return image_path, labels_path


@pytest.fixture
def filled_set(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        image, labels = _pair(raw, f"img{i}", i)
        assert (
            _add(tmp_path / "set", image, labels, "--class-names", "background,follicle,nuclei")
            == 0
        )
    return tmp_path / "set"


def test_add_creates_set_and_updates(tmp_path, capsys):
    image, labels = _pair(tmp_path, "a", 0)
    mask = tmp_path / "mask.png"
    skio.imsave(mask, np.pad(np.ones((4, 4), np.uint8), 30), check_contrast=False)
    assert _add(tmp_path / "set", image, labels) == 0
    assert "1 image in" in capsys.readouterr().out
    assert _add(tmp_path / "set", image, labels, "--corrected", mask) == 0
    assert "1 image in" in capsys.readouterr().out
    s = AnnotatedSet.open(tmp_path / "set")
    assert s.class_names == ["background", "class 1", "class 2"]
    assert s.items[0].name == "a" and s.items[0].corrected_pixels == 16
    assert s.items[0].source.endswith("a.tif")


def test_add_stack_adds_annotated_slices(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    labels = np.full((3, 32, 32), 255, np.uint8)
    labels[0, :4] = 1
    labels[2, 5:9] = 0
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "l.tif", labels)
    assert _add(tmp_path / "set", tmp_path / "s.tif", tmp_path / "l.tif", "--name", "stack") == 0
    items = AnnotatedSet.open(tmp_path / "set").items
    assert [(it.name, it.slice_index) for it in items] == [("stack_z0000", 0), ("stack_z0002", 2)]


def test_add_errors(tmp_path, capsys):
    image, labels = _pair(tmp_path, "a", 0)
    small = tmp_path / "small.png"
    skio.imsave(small, np.zeros((8, 8), np.uint8), check_contrast=False)
    assert _add(tmp_path / "set", image, small) == 2
    assert "must match" in capsys.readouterr().err
    assert _add(tmp_path / "set", image, labels, "--class-names", "background,one") == 2
    assert "classes 0..1" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert _add(tmp_path / "other", image, labels) == 2


def test_train_new_model_then_fine_tune(filled_set, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    common = ("--max-steps", "2", "--batch", "2", "--crop", "32", "--device", "cpu")
    assert fcnseg("train", "--data", filled_set, "--out", out, *common) == 0
    assert capsys.readouterr().out.startswith("validation IoU: ")
    model = load_model(out)
    assert model.info.class_names == ["background", "follicle", "nuclei"]
    assert model.info.architecture["depth"] == 4 and model.info.architecture["base_features"] == 16
    assert model.info.provenance["data"] == str(filled_set)
    assert fcnseg("train", "--data", filled_set, "--out", out, *common) == 2
    assert "--overwrite" in capsys.readouterr().err
    tuned = tmp_path / "tuned.safetensors"
    assert (
        fcnseg(
            "train",
            "--data",
            filled_set,
            "--out",
            tuned,
            "--init",
            out,
            "--checkpoints",
            tmp_path / "ck",
            *common,
        )
        == 0
    )
    assert load_model(tuned).info.provenance["parent"] == str(out)
    assert load_model(tuned).info.scale == 1.0
    # The checkpoints record the fine-tune's settings (the output may hold the start's).
    ran = load_model(tmp_path / "ck" / "latest.safetensors").info.provenance["config"]
    assert ran["trainable"] == "decoder"  # the policy's default
    every = tmp_path / "every.safetensors"
    args = ("--out", every, "--init", out, "--trainable", "all", "--checkpoints", tmp_path / "c2")
    assert fcnseg("train", "--data", filled_set, *args, *common) == 0
    ran = load_model(tmp_path / "c2" / "latest.safetensors").info.provenance["config"]
    assert ran["trainable"] == "all"
    new = tmp_path / "new.safetensors"
    assert fcnseg("train", "--data", filled_set, "--out", new, "--trainable", "all", *common) == 2
    assert "--trainable is for fine-tuning" in capsys.readouterr().err
    halved = tmp_path / "halved.safetensors"
    args = ("--out", halved, "--init", out, "--scale", "0.5", *common)
    assert fcnseg("train", "--data", filled_set, *args) == 0
    capsys.readouterr()
    assert load_model(halved).info.scale == 0.5
    with pytest.raises(SystemExit):
        fcnseg("train", "--data", filled_set, "--out", tmp_path / "x", "--scale", "9")
    assert "outside 0.1-4" in capsys.readouterr().err
    assert (tmp_path / "ck" / "best.safetensors").is_file()
    manifest = json.loads((filled_set / MANIFEST).read_text())
    assert len(manifest["items"]) == 3


def test_train_writes_fill_holes_and_a_fine_tune_inherits_it(filled_set, tmp_path, capsys):
    common = ("--max-steps", "1", "--batch", "2", "--crop", "32", "--device", "cpu")
    solid = tmp_path / "solid.safetensors"
    assert fcnseg("train", "--data", filled_set, "--out", solid, "--fill-holes", *common) == 0
    assert load_model(solid).info.fill_holes
    tuned = tmp_path / "tuned.safetensors"
    assert fcnseg("train", "--data", filled_set, "--out", tuned, "--init", solid, *common) == 0
    assert load_model(tuned).info.fill_holes  # inherited from the start
    hollow = tmp_path / "hollow.safetensors"
    args = ("--out", hollow, "--init", solid, "--no-fill-holes")
    assert fcnseg("train", "--data", filled_set, *args, *common) == 0
    assert not load_model(hollow).info.fill_holes
    plain = tmp_path / "plain.safetensors"
    assert fcnseg("train", "--data", filled_set, "--out", plain, *common) == 0
    assert not load_model(plain).info.fill_holes  # a new model: no unless asked
    capsys.readouterr()


def test_train_on_plain_folder_pair(tmp_path, capsys):
    for sub in ("images", "labels"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(2):
        image, labels = _pair(tmp_path, f"p{i}", i)
        image.rename(tmp_path / "data" / "images" / image.name)
        labels.rename(tmp_path / "data" / "labels" / labels.name)
    out = tmp_path / "m"
    assert (
        fcnseg(
            "train",
            "--data",
            tmp_path / "data",
            "--out",
            out,
            "--max-steps",
            "1",
            "--batch",
            "1",
            "--crop",
            "32",
            "--device",
            "cpu",
            "--seed",
            "3",
        )
        == 0
    )
    assert load_model(tmp_path / "m.safetensors").info.provenance["seed"] == 3


def test_train_errors(tmp_path, capsys):
    assert fcnseg("train", "--data", tmp_path / "nothing", "--out", tmp_path / "m") == 2
    assert "not an annotated set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fcnseg("train", "--data", tmp_path, "--out", tmp_path / "m", "--epochs", "0")


def test_fine_tune_says_whether_it_beat_the_start(filled_set, tmp_path, capsys, monkeypatch):
    start = tmp_path / "start.safetensors"
    common = ("--batch", "2", "--crop", "32", "--device", "cpu")
    assert fcnseg("train", "--data", filled_set, "--out", start, "--max-steps", "30", *common) == 0
    capsys.readouterr()
    wrecked = tmp_path / "wrecked.safetensors"
    # A learning rate this high ruins the weights: the output keeps the starting ones.
    args = ("--init", start, "--max-steps", "3", "--lr", "50", *common)
    assert fcnseg("train", "--data", filled_set, "--out", wrecked, *args) == 0
    out = capsys.readouterr().out
    assert out.startswith("held-out IoU: fine-tuned ") and "did not beat the start" in out
    a, b = load_model(start).state_dict(), load_model(wrecked).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    provenance = load_model(wrecked).info.provenance
    assert provenance["config"]["validate_start"] and provenance["config"]["freeze_batchnorm"]
    # A higher held-out score that the bootstrap does not find sure keeps the start too.
    from napari_fcnseg.training import _run

    monkeypatch.setattr(_run, "gain_confidence", lambda start, candidate: 0.6)
    barely = tmp_path / "barely.safetensors"  # one step: a start that is easy to beat
    assert fcnseg("train", "--data", filled_set, "--out", barely, "--max-steps", "1", *common) == 0
    unsure = tmp_path / "unsure.safetensors"
    args = ("--init", barely, "--max-steps", "30", "--lr", "5e-3", "--trainable", "all", *common)
    assert fcnseg("train", "--data", filled_set, "--out", unsure, *args) == 0
    out = capsys.readouterr().out
    assert "did not beat the start" in out
    assert "(higher, but in only 60% of resamples of the held-out blocks; 90% needed)" in out
    # A sure gain that falls on the model's earlier data (its set's val items) keeps it too.
    monkeypatch.setattr(_run, "gain_confidence", lambda start, candidate: 1.0)
    monkeypatch.setattr(_run.Run, "guard_floor", lambda self: 2.0)  # no IoU reaches it
    guarded = tmp_path / "guarded.safetensors"  # the decoder only: the guard is on
    args = ("--init", barely, "--max-steps", "30", "--lr", "1e-2", "--trainable", "decoder")
    assert fcnseg("train", "--data", filled_set, "--out", guarded, *args, *common) == 0
    out = capsys.readouterr().out
    assert "did not beat the start" in out and "on the model's earlier training data" in out
    with_epochs = ("--init", start, "--epochs", "1", *common)
    assert fcnseg("train", "--data", filled_set, "--out", tmp_path / "e", *with_epochs) == 2
    assert "--max-seconds" in capsys.readouterr().err
