"""Cancelled, crashed or killed training never costs the model you had."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from napari_fcnseg.cli import main
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model import checkpoint
from napari_fcnseg.model.checkpoint import load_model, save_model
from napari_fcnseg.training import finetune, trainer
from napari_fcnseg.training.dataset import AnnotatedSet
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks, small_model

FAST = dict(batch_size=2, crop=32, learning_rate=1e-2, device="cpu")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_crash_while_saving_a_checkpoint_keeps_the_last_good_one(
    small, toy_train, toy_val, tmp_path, monkeypatch
):
    real_save_file = checkpoint.save_file
    calls = []

    def disk_full_on_third_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:  # step 2's latest.safetensors: half written, then the disk is full
            Path(filename).write_bytes(b"\x00" * 100)
            raise OSError(28, "No space left on device")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_full_on_third_save)
    config = TrainConfig(max_steps=5, validate_every=1, **FAST)
    with pytest.raises(OSError, match="No space left"):
        run_to_completion(fit(small, toy_train, toy_val, config, checkpoint_dir=tmp_path))
    latest = load_model(tmp_path / "latest.safetensors")
    assert latest.info.provenance["steps"] == 1  # the checkpoint of step 1, whole
    assert load_model(tmp_path / "best.safetensors").info.provenance["steps"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "latest.safetensors"]


@pytest.fixture
def toy_set(tmp_path: Path) -> Path:
    annotated = AnnotatedSet.create(tmp_path / "set", ["background", "egg"])
    for seed in range(3):
        sample = disks(seed)
        annotated.add_item(sample.image, sample.labels, name=f"disks{seed}")
    return tmp_path / "set"


@pytest.mark.parametrize("when", ["during training", "while saving the result"])
def test_interrupted_cli_training_keeps_the_previous_model(
    when, toy_set, tmp_path, monkeypatch, capsys
):
    previous = save_model(small_model(), tmp_path / "egg.safetensors")
    before = _digest(previous)
    real_fit = trainer.fit

    def interrupted_fit(*args, **kwargs):
        for count, event in enumerate(real_fit(*args, **kwargs)):
            if count == 3:
                raise KeyboardInterrupt  # Ctrl-C at the fourth step
            yield event

    def interrupted_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)
        raise KeyboardInterrupt

    if when == "during training":
        monkeypatch.setattr(trainer, "fit", interrupted_fit)
        monkeypatch.setattr(finetune, "fit", interrupted_fit)  # what fcnseg train --init runs
    checkpoints = tmp_path / "checkpoints"
    args = ["train", "--data", str(toy_set), "--init", str(previous), "--out", str(previous)]
    args += ["--overwrite", "--max-steps", "6", "--batch", "2", "--crop", "32"]
    args += ["--validate-every", "1", "--device", "cpu", "--checkpoints", str(checkpoints)]
    results = []
    if when == "while saving the result":
        real_save_model = save_model

        def save_then_interrupt_the_result(model, path, **kwargs):
            if Path(path) == previous:
                results.append(path)
                monkeypatch.setattr(checkpoint, "save_file", interrupted_save)
            return real_save_model(model, path, **kwargs)

        monkeypatch.setattr(checkpoint, "save_model", save_then_interrupt_the_result)
    assert main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(results) == (when == "while saving the result")
    assert _digest(previous) == before
    load_model(previous)
    assert _hidden(tmp_path) == []
    for name in ("latest.safetensors", "best.safetensors"):
        load_model(checkpoints / name)  # the checkpoints written before the interruption
    assert _hidden(checkpoints) == []


# Trains with a checkpoint at every step until it is killed.
TRAINER = r"""
import sys
from pathlib import Path

import torch

from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks

torch.set_num_threads(1)
model = load_model(sys.argv[1])
config = TrainConfig(
    max_steps=100_000, validate_every=1, batch_size=2, crop=32, learning_rate=1e-2, device="cpu"
)
run_to_completion(fit(model, [disks(0), disks(1)], [disks(2)], config, checkpoint_dir=sys.argv[2]))
"""


@pytest.mark.slow
def test_killed_training_leaves_loadable_models(tmp_path):
    previous = save_model(small_model(), tmp_path / "previous.safetensors")
    before = _digest(previous)
    checkpoints = tmp_path / "checkpoints"
    delays = random.Random(7)
    root = Path(__file__).resolve().parents[2]
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", TRAINER, str(previous), str(checkpoints)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while not (checkpoints / "latest.safetensors").exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "training did not write a checkpoint"
            time.sleep(0.02)
        time.sleep(delays.uniform(0.0, 1.0))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
        for name in ("latest.safetensors", "best.safetensors"):
            model = load_model(checkpoints / name)
            assert model.info.provenance["steps"] >= 1
        (checkpoints / "latest.safetensors").unlink()  # the next run must write a new one
    assert _digest(previous) == before
    assert torch.equal(
        next(iter(load_model(previous).state_dict().values())),
        next(iter(small_model().state_dict().values())),
    )
