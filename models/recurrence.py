"""Weigh a chorus model's chorusness by how strongly each passage comes back later.

A chorus recurs; a final C section or an outro often does not. The weight is
the "best future match" repetition feature of :func:`models.nets.repetition_features`
(cosine similarity of the ~12 s phrase at each chunk with the best-matching
phrase at least ``REPETITION_MIN_LAG`` chunks later, clipped to [0, 1]),
computed from the chunk chroma the scorer already keeps in its chunk
vectors, so the provisional (the chunks so far) and final (the whole track)
curves come from the same function as offline detection.

    chorusness'(c) = chorusness(c) * future(c) ** alpha

``alpha`` = 0 leaves the chorusness unchanged (``window.recurrence`` in
``configs/detect.yaml``; chosen on the validation split, docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np
import torch

from models.errors import InputError
from models.nets import repetition_features

FUTURE_FEATURE = 5  # index of the best later match in repetition_features' output


def future_match(chroma: np.ndarray) -> np.ndarray:
    """Per chunk, the best similarity of its phrase to a later one, in [0, 1]: (C, n_chroma) -> (C,)."""
    chroma = np.asarray(chroma, np.float32)
    if chroma.ndim != 2:
        raise InputError(f"chunk chroma: expected shape (chunks, n_chroma), got {chroma.shape}")
    if len(chroma) == 0:
        return np.zeros(0)
    with torch.inference_mode():
        feats = repetition_features(torch.from_numpy(chroma[None]), torch.tensor([len(chroma)]))
    return np.clip(feats[0, :, FUTURE_FEATURE].numpy().astype(np.float64), 0.0, 1.0)


def weigh(chorusness: np.ndarray, chroma: np.ndarray, alpha: float) -> np.ndarray:
    """``chorusness * future_match(chroma) ** alpha`` (``alpha`` = 0: chorusness as it is)."""
    chorusness = np.asarray(chorusness, np.float64)
    if alpha == 0:
        return chorusness
    if len(chroma) != len(chorusness):
        raise InputError(f"recurrence: {len(chroma)} chunk chroma rows for "
                         f"{len(chorusness)} chorusness values")
    return chorusness * future_match(chroma) ** alpha
