from __future__ import annotations

import pytest
import torch

from napari_fcnseg.errors import InputError
from napari_fcnseg.model.unet import UNet


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (64, 72)])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_output_shape(size, norm):
    net = UNet(in_channels=2, num_classes=3, depth=4, base_features=4, norm=norm).eval()
    out = net(torch.rand(2, 2, *size))
    assert out.shape == (2, 3, *size)


@pytest.mark.parametrize("size", [(37, 50), (63, 64)])
def test_odd_sizes_say_how_to_fix(size):
    net = UNet(depth=4, base_features=4)
    with pytest.raises(InputError, match="multiples of 8: pad to"):
        net(torch.rand(1, 3, *size))


def test_wrong_channels():
    with pytest.raises(InputError, match="expects 3 channel"):
        UNet(in_channels=3, base_features=4)(torch.rand(1, 1, 16, 16))


def test_depth_one_is_plain_convolutions():
    net = UNet(depth=1, base_features=4)
    assert net.required_multiple == 1
    assert net(torch.rand(1, 3, 13, 17)).shape == (1, 2, 13, 17)


def test_config_rebuilds_the_same_architecture():
    net = UNet(in_channels=1, num_classes=4, depth=3, base_features=6, norm="group")
    clone = UNet(**net.config())
    assert [p.shape for p in clone.parameters()] == [p.shape for p in net.parameters()]


def test_skip_connections_carry_fine_detail():
    # A depth-3 U-Net without skips could not place a one-pixel impulse exactly; gradients of
    # the output at a pixel must reach the input at that pixel through the top-level skip.
    torch.manual_seed(0)
    net = UNet(in_channels=1, depth=3, base_features=8).eval()
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    net(x)[0, 1, 5, 7].backward()
    assert x.grad is not None and x.grad[0, 0, 5, 7].abs() > 0
    assert all(up.conv[0].in_channels == 2 * up.up.out_channels for up in net.decoders)


def test_invalid_settings():
    with pytest.raises(InputError, match="num_classes >= 2"):
        UNet(num_classes=1)
    with pytest.raises(InputError, match="normalisation"):
        UNet(norm="layer")
