"""bioimage.io export: a package that validates offline and loads back losslessly."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from napari_fcnseg.cli import main
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import InputError, ModelFileError
from napari_fcnseg.model.checkpoint import load_model, read_model_info, save_model
from tests.helpers import disks

bioimageio_core = pytest.importorskip("bioimageio.core")

from napari_fcnseg.core.bioimageio import (  # noqa: E402
    architecture_source,
    export_bioimageio,
    model_card,
)


@pytest.fixture
def package(tmp_path, trained_tiny_model):
    image = disks(3).image
    return export_bioimageio(
        trained_tiny_model,
        tmp_path / "tiny.zip",
        np.tile(image, (2, 2, 1)),
        name="tiny disks",
        description="a test model",
        documentation="# tiny\n",
    )


def test_the_package_validates_and_reproduces_its_test_tensors_offline(package):
    for weight_format in ("pytorch_state_dict", "torchscript"):
        summary = bioimageio_core.test_model(str(package), weight_format=weight_format)
        assert summary.status == "passed", summary
    names = zipfile.ZipFile(package).namelist()
    expected_files = ("rdf.yaml", "architecture.py", "weights.pt", "weights.torchscript.pt")
    for expected in (*expected_files, "test_input.npy", "cover.png"):
        assert expected in names


def test_it_loads_back_losslessly_and_segments_identically(package, trained_tiny_model):
    again = load_model(package)
    assert again.info.class_names == trained_tiny_model.info.class_names
    assert read_model_info(package).normalization == trained_tiny_model.info.normalization
    for (name, a), b in zip(
        trained_tiny_model.state_dict().items(), again.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    image = disks(5).image
    np.testing.assert_array_equal(
        run_to_completion(predict_probabilities(again, image, device="cpu")),
        run_to_completion(predict_probabilities(trained_tiny_model, image, device="cpu")),
    )


def test_an_invalid_package_from_another_tool_is_refused(tmp_path):
    foreign = tmp_path / "other.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\n")
        archive.writestr("weights.pt", b"pickled")
    with pytest.raises(ModelFileError, match=r"not a valid bioimage\.io model package"):
        load_model(foreign)


def test_the_architecture_source_stands_alone(tmp_path):
    source = architecture_source()
    assert "from .." not in source and "class FcnsegUNet" in source
    namespace: dict = {}
    exec(compile(source, "architecture.py", "exec"), namespace)  # our own code, as a zoo tool does
    net = namespace["FcnsegUNet"](in_channels=3, num_classes=2, depth=2, base_features=4)
    out = net(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 2, 16, 16)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 16, 16))


def test_a_model_working_at_another_scale_is_refused(tmp_path, trained_tiny_model):
    trained_tiny_model.info.scale = 0.5
    try:
        with pytest.raises(InputError, match="scale"):
            export_bioimageio(
                trained_tiny_model,
                tmp_path / "x.zip",
                disks(3).image,
                name="x",
                description="x",
                documentation="x",
            )
    finally:
        trained_tiny_model.info.scale = 1.0
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.slow
def test_cli_export_and_predict_with_the_package(tmp_path, trained_tiny_model, capsys):
    model_file = save_model(trained_tiny_model, tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny.zip"
    args = ["export-bmz", "--model", str(model_file), "--out", str(out), "--author", "A. Person"]
    assert main(args) == 0
    assert "A. Person" in zipfile.ZipFile(out).read("rdf.yaml").decode()
    card = model_card(trained_tiny_model, model_file)  # no tiny.md beside it: a summary
    assert "disk" in card.lower() or trained_tiny_model.info.class_names[1] in card
    assert main(args) == 2  # never replaced without --overwrite
    assert "exists" in capsys.readouterr().err
    scan = tmp_path / "scan.png"
    from skimage import io as skio

    skio.imsave(scan, disks(4).image, check_contrast=False)
    assert main(["predict", str(scan), "--out", str(tmp_path / "o"), "--model", str(out)]) == 0
    assert (tmp_path / "o" / "scan_labels.tif").is_file()
