"""Reading images and labels, writing labels atomically."""
