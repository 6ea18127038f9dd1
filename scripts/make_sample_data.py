"""Write the project's ``sample_data/`` folder from the synthetic egg-chamber generator.

    python scripts/make_sample_data.py [--out sample_data] [--overwrite]

The images are the plugin's napari sample data (same fixed seeds), saved with their exact
labels (0 background, 1 follicle cells, 2 nurse-cell nuclei, 3 nurse-cell cytoplasm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage import io as skio

from napari_fcnseg._sample_data import SLICE_PARAMS, STACK_PARAMS
from napari_fcnseg.training.synthetic import make_egg_chamber_slice, make_egg_chamber_stack

ROOT = Path(__file__).resolve().parents[1]
NAMES = (
    "egg_chambers.tif",
    "egg_chambers.png",
    "egg_chambers_labels.tif",
    "egg_chambers_stack.tif",
    "egg_chambers_stack_labels.tif",
    "README.md",
)

README = """\
# Sample data (synthetic)

Synthetic confocal-like images of *Drosophila* egg chambers made by this project's generator
(`napari_fcnseg.training.synthetic`), with exact per-pixel labels. They are the same images the
plugin offers under *File > Open Sample > napari-fcnseg*. No real data is copied here.

| file | content |
| --- | --- |
| `egg_chambers.tif` | 2-D RGB slice, {slice_shape} uint8, ImageJ TIFF (axes YXS, zlib) |
| `egg_chambers.png` | the same slice as PNG |
| `egg_chambers_labels.tif` | its labels, {slice_lab} uint8 (axes YX) |
| `egg_chambers_stack.tif` | RGB z-stack, {stack_shape} uint8, ImageJ TIFF (axes ZYXS, dz {dz} px) |
| `egg_chambers_stack_labels.tif` | its labels, {stack_lab} uint8 (axes ZYX) |

Labels: 0 background, 1 follicle cells, 2 nurse-cell nuclei, 3 nurse-cell cytoplasm (the
numbering of the real annotations in `drosophila_ovary/annot_struct`).

Made with `python scripts/make_sample_data.py --overwrite` from fixed seeds
(slice: `{slice_params}`; stack: `{stack_params}`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    out: Path = args.out
    existing = [name for name in NAMES if (out / name).exists()]
    if existing and not args.overwrite:
        print(
            f"error: {out} already holds {', '.join(existing)}; pass --overwrite to replace them",
            file=sys.stderr,
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)

    image, labels = make_egg_chamber_slice(**SLICE_PARAMS)
    dz = STACK_PARAMS["z_spacing"]
    stack, stack_labels = make_egg_chamber_stack(**STACK_PARAMS)
    common = {"imagej": True, "compression": "zlib"}
    tifffile.imwrite(
        out / "egg_chambers.tif", image, photometric="rgb", metadata={"axes": "YXS"}, **common
    )
    skio.imsave(out / "egg_chambers.png", image, check_contrast=False)
    tifffile.imwrite(out / "egg_chambers_labels.tif", labels, metadata={"axes": "YX"}, **common)
    tifffile.imwrite(
        out / "egg_chambers_stack.tif",
        stack,
        photometric="rgb",
        metadata={"axes": "ZYXS", "spacing": dz, "unit": "pixel"},
        **common,
    )
    tifffile.imwrite(
        out / "egg_chambers_stack_labels.tif",
        stack_labels,
        metadata={"axes": "ZYX", "spacing": dz, "unit": "pixel"},
        **common,
    )
    (out / "README.md").write_text(
        README.format(
            slice_shape=" x ".join(map(str, image.shape)),
            slice_lab=" x ".join(map(str, labels.shape)),
            stack_shape=" x ".join(map(str, stack.shape)),
            stack_lab=" x ".join(map(str, stack_labels.shape)),
            dz=dz,
            slice_params=SLICE_PARAMS,
            stack_params=STACK_PARAMS,
        )
    )
    for name in NAMES:
        print(f"{out / name}  {(out / name).stat().st_size / 1024:.0f} KiB")
    print(f"class pixel counts (slice): {np.bincount(labels.ravel(), minlength=4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
