"""scripts/train_default_model.py refuses bad arguments before it trains for half an hour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_default_model.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_a_first_stage_of_another_recipe_is_refused(tmp_path: Path, tiny_model_file: Path) -> None:
    # the tiny model has two classes; the four-structure recipe needs four
    done = _run(
        "--data", str(tmp_path), "--structure", "--from-stage1", str(tiny_model_file),
        "--out", str(tmp_path / "new.safetensors"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "has 2 classes, this recipe 4" in done.stderr
    assert "--structure" in done.stderr
    assert not (tmp_path / "new.safetensors").exists()


def test_an_existing_output_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"a model the user keeps")
    done = _run("--data", str(tmp_path), "--out", str(out))
    assert done.returncode == 2
    assert "--overwrite" in done.stderr
    assert out.read_bytes() == b"a model the user keeps"
