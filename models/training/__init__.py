"""Training: the song manifest, POP909 rendering, cached features, the trainer."""
