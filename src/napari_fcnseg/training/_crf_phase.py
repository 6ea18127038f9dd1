"""Joint U-Net + CRF-as-RNN training, run by :func:`.trainer.fit` after the U-Net phase.

The CRF layer (:class:`~napari_fcnseg.model.crf_rnn.CrfRnn`) takes the U-Net's log-probabilities
as unaries and learns its kernel weights and label compatibilities while the U-Net keeps
learning at a tenth of its rate, as in Zheng et al. (2015). Crops carry the network's normalised
channels and the CRF's 0-255 view of the whole image (:func:`~..model.combined.crf_image`), with
the same geometric augmentation. The phase validates with the CRF; if it never beats the U-Net
alone, ``fit`` returns the U-Net without the layer. Its steps run in the loop the U-Net phase
uses (:func:`._run.run_loop`): only what a step and a validation do differ.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence

import numpy as np
import torch

from ..core.progress import Progress
from ..model.combined import MIN_PROBABILITY, attach_crf, crf_image, model_crf
from ._run import (
    Loop,
    Run,
    channel_permutation_for,
    crop_size,
    run_loop,
    validate_run,
    validation_event,
)
from .augment import sample_batch
from .losses import segmentation_loss
from .samples import PreparedSample, TrainingSample


def crf_phase(
    run: Run, train: Sequence[TrainingSample], targets: list[PreparedSample], note: str
) -> Generator[Progress, None, bool]:
    """Train U-Net + CRF jointly for ``config.crf_steps`` steps; True if stopped early."""
    config, net = run.config, run.net
    if run.best_state is not None:  # continue from the best U-Net
        net.load_state_dict(run.best_state, strict=False)
    crf = model_crf(net) or attach_crf(net, num_iterations=config.crf_iterations)
    crf.to(run.device)
    channels = net.info.in_channels
    stacked = [
        PreparedSample(np.concatenate([t.image, crf_image(s.image)]), t.target, t.name)
        for s, t in zip(train, targets, strict=True)
    ]
    crop = crop_size(net, targets, config.crf_crop)
    permute = channel_permutation_for(config, channels)
    crf_ids = {id(p) for p in crf.parameters()}
    unet_params = [p for p in net.parameters() if id(p) not in crf_ids]
    optimizer = torch.optim.Adam(
        [
            {"params": unet_params, "lr": config.learning_rate * 0.1},
            {"params": list(crf.parameters()), "lr": config.crf_learning_rate},
        ]
    )
    start_step = run.step
    end_step = start_step + config.crf_steps
    iou, class_iou, _ = validate_run(run, float("nan"), with_crf=True)
    yield validation_event(run, end_step, float("nan"), iou, class_iou, " (untrained CRF)" + note)
    floor = math.log(MIN_PROBABILITY)
    net.train()

    def step() -> float:
        x, y = sample_batch(
            stacked,
            config.crf_batch_size,
            crop,
            run.rng,
            augment=config.augment,
            channel_permutation=permute,
            legacy_elastic=config.legacy_elastic,
            network_channels=channels,
        )
        x_t = torch.from_numpy(x).to(run.device)
        optimizer.zero_grad(set_to_none=True)
        unary = torch.log_softmax(net(x_t[:, :channels]), dim=1).clamp_min(floor)
        logits = crf(unary, x_t[:, channels:])
        loss = segmentation_loss(logits, torch.from_numpy(y).to(run.device), config.loss)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    loop = Loop(
        step=step,
        validate=lambda loss: validate_run(run, loss, with_crf=True),
        total=lambda _times: end_step,
        closing_total=lambda: run.step,
        max_steps=end_step,
        deadline=config.max_seconds,
        is_due=lambda: (
            (run.step - start_step) % config.crf_validate_every == 0 or run.step == end_step
        ),
        patience=config.patience,
        label="CRF step",
        phase="crf",
        note=" (with CRF)" + note,
        after_validation=net.train,
        report_best=True,
        window=10,
    )
    return (yield from run_loop(run, loop))
