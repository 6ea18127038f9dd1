"""Training: annotated sets, synthetic data, augmentation, losses and the trainer."""
