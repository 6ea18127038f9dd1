"""Joint U-Net + CRF-as-RNN training, run by :func:`.trainer.fit` after the U-Net phase.

The CRF layer (:class:`~napari_fcnseg.model.crf_rnn.CrfRnn`) takes the U-Net's log-probabilities
as unaries and learns its kernel weights and label compatibilities while the U-Net keeps
learning at a tenth of its rate, as in Zheng et al. (2015). Crops carry the network's normalised
channels and the CRF's 0-255 view of the whole image (:func:`~..model.combined.crf_image`), with
the same geometric augmentation. The phase validates with the CRF; if it never beats the U-Net
alone, ``fit`` returns the U-Net without the layer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence

import numpy as np
import torch

from ..core.progress import Progress
from ..model.combined import MIN_PROBABILITY, attach_crf, crf_image, model_crf
from ._run import Run, channel_permutation_for, crop_size, validate_run, validation_event
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
    step_times: list[float] = []
    stale, loss_value = 0, float("nan")
    net.train()
    while run.step < end_step:
        mean_step = float(np.mean(step_times[-10:])) if step_times else 0.0
        if config.max_seconds is not None and run.elapsed + mean_step > config.max_seconds:
            break
        t0 = time.monotonic()
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
        loss_value = float(loss.detach())
        run.step += 1
        step_times.append(time.monotonic() - t0)
        info = {"loss": loss_value, "val_iou": run.best_iou, "phase": "crf", "elapsed": run.elapsed}
        yield Progress(run.step, end_step, f"CRF step {run.step}: loss {loss_value:.4f}", info)
        last = run.step == end_step
        if (run.step - start_step) % config.crf_validate_every == 0 or last:
            iou, class_iou, improved = validate_run(run, loss_value, with_crf=True)
            stale = 0 if improved else stale + 1
            yield validation_event(run, end_step, loss_value, iou, class_iou, " (with CRF)" + note)
            net.train()
            if stale >= config.patience:
                return True
    if run.history[-1]["step"] != run.step:
        iou, class_iou, _ = validate_run(run, loss_value, with_crf=True)
        yield validation_event(run, run.step, loss_value, iou, class_iou, " (with CRF)" + note)
    return False
