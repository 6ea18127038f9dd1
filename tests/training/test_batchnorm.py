"""BatchNorm statistics re-estimated on the training images (training/_batchnorm.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.training._batchnorm import has_batchnorm, recalibrate_batchnorm
from napari_fcnseg.training.samples import PreparedSample, prepare_sample
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks, small_model


def test_running_statistics_become_those_of_the_images():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (3, 32, 32)) * [[[1.0]], [[2.0]], [[3.0]]] + [[[5.0]], [[0]], [[-2]]]
    target = PreparedSample(image.astype(np.float32), np.zeros((32, 32), np.int64), "x")
    net = nn.Sequential(nn.BatchNorm2d(3))
    net[0].running_mean.fill_(100.0)
    net.eval()
    recalibrate_batchnorm(net, [target], crop=32, batch_size=2, device=torch.device("cpu"), seed=0)
    assert not net.training  # mode restored
    np.testing.assert_allclose(net[0].running_mean, image.mean(axis=(1, 2)), atol=1e-4)
    np.testing.assert_allclose(net[0].running_var, image.var(axis=(1, 2), ddof=1), rtol=1e-3)


def test_network_without_batchnorm_is_left_alone():
    net = nn.Sequential(nn.Conv2d(3, 2, 1))
    before = [p.clone() for p in net.parameters()]
    target = PreparedSample(np.zeros((3, 8, 8), np.float32), np.zeros((8, 8), np.int64), "x")
    assert not has_batchnorm(net)
    recalibrate_batchnorm(net, [target], crop=8, batch_size=1, device=torch.device("cpu"), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def _train_vs_eval_gap(recalibrate: bool) -> float:
    """Fine-tune on one image at full size; how far eval-mode logits are from batch-stat ones."""
    sample = disks(0)
    config = TrainConfig(
        max_steps=6,
        batch_size=2,
        crop=64,
        learning_rate=5e-3,
        validate_every=6,
        seed=0,
        device="cpu",
        recalibrate_batchnorm=recalibrate,
    )
    model = run_to_completion(fit(small_model(), [sample], [], config)).model
    x = torch.from_numpy(prepare_sample(sample, 3, model.info.normalization).image[None])
    with torch.no_grad():
        eval_logits = model.eval()(x)
        batch_logits = model.train()(x)
    return float((eval_logits - batch_logits).abs().max())


def test_fit_recalibrates_before_validating():
    assert has_batchnorm(small_model())
    # The only image, un-augmented and whole, defines the statistics: eval matches batch mode.
    assert _train_vs_eval_gap(True) < 0.05
    assert _train_vs_eval_gap(False) > 10 * _train_vs_eval_gap(True)
