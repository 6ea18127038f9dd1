from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_fcnseg.core.cluster import PredictSettings, predict_files
from napari_fcnseg.core.normalize import normalization_bounds
from napari_fcnseg.core.progress import Progress, run_to_completion
from napari_fcnseg.core.slices import SliceLabels, label_slices
from napari_fcnseg.errors import InputError
from napari_fcnseg.io.ome_zarr import read_ome_zarr_labels
from napari_fcnseg.model.checkpoint import save_model
from tests.helpers import make_tiny_model


def _all_labels(model, data, **kwargs):
    return np.stack(
        [
            e.labels
            for e in label_slices(model, data, tile=32, device="cpu", **kwargs)
            if isinstance(e, SliceLabels)
        ]
    )


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_slices_predicted_apart_with_shared_bounds_equal_the_whole_run(rng, scale):
    model = make_tiny_model(1)
    model.info.scale = scale  # a model with a working scale answers at the stack's size too
    stack = (rng.random((4, 40, 50)) * 1000).astype(np.uint16)
    whole = _all_labels(model, stack)
    bounds = normalization_bounds(stack[..., None], model.info.normalization)
    parts = [_all_labels(model, stack, bounds=bounds, slices=[z])[0] for z in (3, 0, 2, 1)]
    np.testing.assert_array_equal(np.stack([parts[1], parts[3], parts[2], parts[0]]), whole)
    assert whole.shape == (4, 40, 50)


def test_crf_runs_per_slice(rng):
    model = make_tiny_model(1)
    stack = (rng.random((2, 32, 40)) * 1000).astype(np.uint16)
    events = list(label_slices(model, stack, tile=32, device="cpu", crf=True, crf_iterations=2))
    assert [e.index for e in events if isinstance(e, SliceLabels)] == [0, 1]
    assert any(isinstance(e, Progress) for e in events)


def test_slices_outside_the_stack_are_refused(rng):
    model = make_tiny_model(1)
    with pytest.raises(InputError, match="outside"):
        _all_labels(model, np.zeros((2, 16, 16), np.uint8), slices=[2])


@pytest.mark.slow
def test_local_cluster_gives_the_local_result_and_loads_the_model_once(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    model = make_tiny_model(1)
    model_path = save_model(model, tmp_path / "m.safetensors")
    stacks = [(rng.random((3, 40, 50)) * 1000).astype(np.uint16) for _ in range(2)]
    inputs = []
    for i, stack in enumerate(stacks):
        inputs.append(tmp_path / f"s{i}.tif")
        tifffile.imwrite(inputs[-1], stack, imagej=True, metadata={"axes": "ZYX"})
    outputs = [tmp_path / "out" / "s0_labels.tif", tmp_path / "out" / "s1_labels.ome.zarr"]
    settings = PredictSettings(model_path=str(model_path), tile=32, device="cpu", torch_threads=1)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        events = []
        written = run_to_completion(predict_files(client, inputs, outputs, settings), events.append)
        loads = client.run(
            lambda: __import__("napari_fcnseg.core._cluster_worker", fromlist=["LOADS"]).LOADS
        )
    assert written == outputs
    assert events[-1].step == events[-1].total == 6
    assert all(len(models) <= 1 for models in loads.values())  # each worker loaded it once
    np.testing.assert_array_equal(tifffile.imread(outputs[0]), _all_labels(model, stacks[0]))
    labels, names = read_ome_zarr_labels(outputs[1])
    np.testing.assert_array_equal(labels[:], _all_labels(model, stacks[1]))
    assert names == model.info.class_names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [o.name for o in outputs]
