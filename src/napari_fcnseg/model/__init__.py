"""Networks (U-Net, CRF-as-RNN) and self-describing model files."""
