from __future__ import annotations

import json
import pickle

import pytest
import torch

from napari_fcnseg.errors import ModelFileError
from napari_fcnseg.model.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    load_model,
    read_model_info,
    save_model,
)


def test_round_trip(tmp_path, tiny_model):
    tiny_model.info.provenance["note"] = "test"
    path = save_model(tiny_model, tmp_path / "m")
    assert path.suffix == ".safetensors"
    loaded = load_model(path)
    assert loaded.info.class_names == tiny_model.info.class_names
    assert loaded.info.in_channels == 3
    assert loaded.info.provenance["note"] == "test"
    assert "saved" in loaded.info.provenance
    assert not loaded.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny_model(x))


def test_save_does_not_overwrite(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError):
        save_model(tiny_model, path)
    save_model(tiny_model, path, overwrite=True)


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    source = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')"

    class Payload:
        def __reduce__(self):
            return (exec, (source,))

    for name, write in [
        ("evil.safetensors", lambda p: p.write_bytes(pickle.dumps(Payload()))),
        ("evil.pt", lambda p: torch.save({"weights": Payload()}, p)),
    ]:
        path = tmp_path / name
        write(path)
        with pytest.raises(ModelFileError, match="pickle"):
            load_model(path)
        assert not marker.exists()


def test_truncated_file(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2):
        broken = tmp_path / f"cut{cut}.safetensors"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=r"truncated|corrupt"):
            load_model(broken)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "none.safetensors")


def _rewrite_metadata(path, change):
    from safetensors.torch import load_file, save_file

    info = json.loads(read_model_info(path).to_json())
    change(info)
    save_file(load_file(str(path)), str(path), metadata={METADATA_KEY: json.dumps(info)})


def test_newer_format_is_refused(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    _rewrite_metadata(path, lambda info: info.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match="upgrade napari-fcnseg"):
        load_model(path)


def test_inconsistent_metadata_is_refused(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    _rewrite_metadata(path, lambda info: info.update(class_names=["a", "b", "c"]))
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_model(path)


def test_plain_safetensors_is_not_a_model(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="not a napari-fcnseg model"):
        load_model(path)


def test_header_length_starting_like_a_pickle_is_still_safetensors(tmp_path, tiny_model):
    # The 8-byte little-endian header length of a valid file can begin with 0x80, the first
    # byte of a pickle: such a file must load, not be refused.
    for pad in range(256):
        tiny_model.info.provenance["pad"] = "x" * pad
        path = save_model(tiny_model, tmp_path / f"m{pad}.safetensors")
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        pytest.fail("no header length starting with 0x80 was produced")
    assert load_model(path).info.provenance["pad"] == "x" * pad


def _stored_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()[METADATA_KEY])


def test_working_scale_round_trips_and_scale_1_files_stay_format_1(tmp_path, tiny_model):
    plain = save_model(tiny_model, tmp_path / "plain.safetensors")
    stored = _stored_metadata(plain)
    assert stored["format_version"] == 1 and "scale" not in stored  # older readers can read it
    assert load_model(plain).info.scale == 1.0
    tiny_model.info.scale = 0.5
    scaled = save_model(tiny_model, tmp_path / "scaled.safetensors")
    stored = _stored_metadata(scaled)
    assert stored["format_version"] == FORMAT_VERSION == 2 and stored["scale"] == 0.5
    assert load_model(scaled).info.scale == 0.5


@pytest.mark.parametrize("bad", [0, -2, 1e9, "half"])
def test_unusable_scale_in_a_file_is_refused(tmp_path, tiny_model, bad):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    _rewrite_metadata(path, lambda info: info.update(scale=bad, format_version=2))
    with pytest.raises(ModelFileError, match=r"m\.safetensors.*scale"):
        load_model(path)


def test_fill_holes_round_trips_and_is_written_only_when_true(tmp_path, tiny_model):
    plain = save_model(tiny_model, tmp_path / "plain.safetensors")
    assert "fill_holes" not in _stored_metadata(plain)  # older readers see the file as before
    assert load_model(plain).info.fill_holes is False
    tiny_model.info.fill_holes = True
    solid = save_model(tiny_model, tmp_path / "solid.safetensors")
    assert _stored_metadata(solid)["fill_holes"] is True
    assert load_model(solid).info.fill_holes is True


def test_a_fill_holes_that_is_not_true_or_false_is_refused(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    _rewrite_metadata(path, lambda info: info.update(fill_holes="yes"))
    with pytest.raises(ModelFileError, match=r"m\.safetensors.*fill_holes"):
        load_model(path)
