"""GUI-free core: axes, normalisation, tiled inference, CRF refinement, metrics."""
