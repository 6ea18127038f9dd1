"""Render the plugin icon (resources/icon.png): three egg chambers and their outline."""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

n = 256
yy, xx = np.mgrid[:n, :n]
img = np.zeros((n, n, 3), float)


def ell(cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


chambers = [(150, 92, 78, 64), (96, 178, 52, 44), (52, 226, 30, 26)]
mask = np.zeros((n, n), bool)
for c in chambers:
    m = ell(*c)
    mask |= m
    img[m] = [0.55, 0.08, 0.35]
    inner = ell(c[0], c[1], c[2] - 7, c[3] - 7)
    img[inner] = [0.32, 0.05, 0.22]
    r = np.random.default_rng(int(c[0]))
    for _ in range(5):
        a = r.uniform(0, 2 * np.pi)
        d = r.uniform(0, 0.5)
        cy = c[0] + d * c[2] * np.sin(a)
        cx = c[1] + d * c[3] * np.cos(a)
        rad = max(4, c[3] * 0.18)
        img[((yy - cy) ** 2 + (xx - cx) ** 2 < rad**2) & inner] = [0.95, 0.3, 0.75]
img = ndi.gaussian_filter(img, (1.2, 1.2, 0))
edge = mask ^ ndi.binary_erosion(mask, iterations=5)
img[edge] = [1.0, 0.85, 0.1]
alpha = np.full((n, n), 255, np.uint8)
out = np.dstack([(img * 255).clip(0, 255).astype(np.uint8), alpha])
bg = np.array([22, 24, 30, 255], np.uint8)
out[~ndi.binary_dilation(mask, iterations=6)] = bg
Image.fromarray(out).save(
    Path(__file__).resolve().parents[1] / "src/napari_fcnseg/resources/icon.png", optimize=True
)
