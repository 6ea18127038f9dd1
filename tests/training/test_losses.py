import pytest
import torch

from napari_fcnseg.errors import InputError
from napari_fcnseg.training.losses import LOSSES, class_balanced_weights, segmentation_loss
from napari_fcnseg.training.samples import IGNORE_LABEL


@pytest.mark.parametrize("kind", LOSSES)
def test_ignored_pixels_get_no_gradient(kind):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :4] = IGNORE_LABEL
    loss = segmentation_loss(logits, target, kind)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[:, :, :4].abs().max() == 0
    assert logits.grad[:, :, 4:].abs().max() > 0
    # changing ignored logits does not change the loss
    other = logits.detach().clone()
    other[:, :, :4] = torch.randn(2, 3, 4, 8) * 10
    assert torch.allclose(segmentation_loss(other, target, kind), loss.detach())


@pytest.mark.parametrize("kind", LOSSES)
def test_all_ignored_is_zero_not_nan(kind):
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 4, 4), IGNORE_LABEL), kind)
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0


def test_perfect_prediction_has_small_loss():
    target = torch.randint(0, 2, (1, 16, 16))
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 20
    assert segmentation_loss(logits, target, "dice_ce") < 1e-3


def test_balanced_weights_inverse_frequency():
    target = torch.tensor([[0, 0, 0, 1, IGNORE_LABEL]])
    w = class_balanced_weights(target, 3)
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2, 1.0]))


def test_unknown_loss():
    with pytest.raises(InputError, match="dice_ce"):
        segmentation_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "x")
