"""Training and evaluation on labelled windows: the STEAD format, EqT's labels and augmentations,
the 25 metrics, the trainer and the variant comparison table."""
