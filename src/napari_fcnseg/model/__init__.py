"""Networks (U-Net, CRF-as-RNN) and self-describing model files."""

# Other tools' bioimage.io packages: model files are opened through checkpoint.load_model,
# which dispatches to the loader this module registers (bioimageio itself loads lazily).
from . import foreign as _foreign  # noqa: F401
