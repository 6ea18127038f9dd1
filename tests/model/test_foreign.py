"""Other tools' bioimage.io packages: ONNX runs, code runs only when trusted, the rest refused.

The packages (:mod:`tests.bioimageio_packages`) are written as another tool would write them;
our results are compared with ``bioimageio.core``'s own prediction of the same package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_fcnseg.cli import main
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import ModelFileError
from napari_fcnseg.model.checkpoint import load_model, read_model_info
from tests.helpers import disks

bioimageio_core = pytest.importorskip("bioimageio.core")
from napari_fcnseg.model.foreign import ForeignModel, UntrustedModelError, code_formats  # noqa: E402
from tests.bioimageio_packages import write_package  # noqa: E402


def _core_prediction(package: Path, image: np.ndarray) -> np.ndarray:
    """bioimageio.core's own prediction of ``image`` (Y, X, C): (K, Y, X) as it outputs."""
    from bioimageio.core import predict

    descr = bioimageio_core.load_description(package)
    sample = predict(model=descr, inputs={"raw": image.transpose(2, 0, 1)[None].astype(np.float32)})
    return np.asarray(sample.members["out"].data)[0]


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return write_package(tmp_path_factory.mktemp("onnx"))


def test_an_onnx_package_segments_as_bioimageio_core_predicts_it(onnx_package):
    model = load_model(onnx_package)
    assert isinstance(model, ForeignModel) and model.weight_format == "onnx"
    assert model.info.class_names == ["background", "cell"]
    assert model.info.normalization["method"] == "percentile"
    image = (disks(4, size=72).image * 255).astype(np.float32)  # 72 px: tiles need padding
    ours = run_to_completion(predict_probabilities(model, image, device="cpu"))
    theirs = _core_prediction(onnx_package, image)
    np.testing.assert_allclose(ours[1], theirs[0], atol=1e-4)
    np.testing.assert_allclose(ours.sum(0), 1.0, atol=1e-5)
    assert 0.05 < (ours[1] > 0.5).mean() < 0.95  # a real decision, not a constant


def test_reading_an_onnx_package_describes_it_without_running_it(onnx_package):
    assert code_formats(onnx_package) == ()  # ONNX runs without asking
    info = read_model_info(onnx_package)
    assert info.in_channels == 3 and info.num_classes == 2
    assert info.architecture["name"] == "bioimageio"


@pytest.mark.parametrize("weights", ["torchscript", "pytorch_state_dict"])
def test_packages_that_run_their_code_need_trust(tmp_path, weights):
    package = write_package(
        tmp_path, weights=weights, channels_out=2, preprocessing="zero_mean_unit_variance"
    )
    with pytest.raises(UntrustedModelError, match="--trust-model-code"):
        load_model(package)
    assert code_formats(package) == (weights,)  # read from the description alone
    model = load_model(package, trust_model_code=True)
    assert model.info.class_names == ["bg", "cell"]
    image = (disks(6).image * 255).astype(np.float32)
    ours = run_to_completion(predict_probabilities(model, image, device="cpu"))
    np.testing.assert_allclose(ours, _core_prediction(package, image), atol=1e-4)


def test_fixed_linear_preprocessing_is_reproduced(tmp_path):
    pytest.importorskip("onnxruntime")
    package = write_package(tmp_path, preprocessing="scale_linear")
    model = load_model(package)
    assert model.info.normalization["method"] == "fixed"
    image = (disks(2).image * 255).astype(np.float32)
    ours = run_to_completion(predict_probabilities(model, image, device="cpu"))
    np.testing.assert_allclose(ours[1], _core_prediction(package, image)[0], atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preprocessing": "binarize"}, "preprocessing 'binarize'"),
        ({"input_axes": ("batch", "channel", "x", "y")}, r"axes \(batch, channel, x, y\)"),
        ({"fixed_size": 64}, "only 64 px"),
    ],
)
def test_packages_we_cannot_reproduce_are_refused_with_the_reason(tmp_path, kwargs, message):
    pytest.importorskip("onnxruntime")
    package = write_package(tmp_path, **kwargs)
    with pytest.raises(ModelFileError, match=message):
        load_model(package)


def test_cli_predicts_with_an_onnx_package_and_needs_trust_for_code(tmp_path, onnx_package):
    from skimage import io as skio

    image = tmp_path / "disks.png"
    skio.imsave(image, (disks(3).image * 255).astype(np.uint8), check_contrast=False)
    assert (
        main(["predict", str(image), "--model", str(onnx_package), "--out", str(tmp_path / "out")])
        == 0
    )
    assert (tmp_path / "out" / "disks_labels.tif").is_file()
    scripted = write_package(tmp_path / "ts", weights="torchscript")
    assert (
        main(["predict", str(image), "--model", str(scripted), "--out", str(tmp_path / "ts_out")])
        == 2
    )
    assert (
        main(
            [
                "predict",
                str(image),
                "--model",
                str(scripted),
                "--out",
                str(tmp_path / "ts_out"),
                "--trust-model-code",
            ]
        )
        == 0
    )


def test_a_foreign_model_cannot_be_fine_tuned_or_exported(tmp_path, onnx_package, capsys):
    from napari_fcnseg.errors import InputError
    from napari_fcnseg.training.finetune import fine_tune

    with pytest.raises(InputError, match="cannot be fine-tuned"):
        run_to_completion(fine_tune(load_model(onnx_package), [disks(1), disks(2)]))
    assert main(["export-bmz", "--model", str(onnx_package), "--out", str(tmp_path / "a.zip")]) == 2
    assert "already a bioimage.io package" in capsys.readouterr().err


def test_tiles_of_any_size_are_padded_to_the_package_sizes(onnx_package):
    model = load_model(onnx_package)
    assert model.required_multiple == 8
    for side in (8, 20, 35):  # below the minimum (16), between steps, odd
        out = model(torch.rand(2, 3, side, side + 3))
        assert out.shape == (2, 2, side, side + 3)
        np.testing.assert_allclose(out.exp().sum(1).numpy(), 1.0, atol=1e-5)
