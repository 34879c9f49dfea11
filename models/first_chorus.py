"""Weigh a chorus model's chorusness toward the material of its first chorus-like phrase.

POP909's chorus is the *second* melodic material in order of first hearing
(B). Where later material (C, ...) follows it, that material is often louder
and heard more often, and the model rates it about as high: most of the
songs the window misses on the validation split put it on C's later
hearings (docs/evaluation.md). The first chorus-like phrase is B's first
hearing far more often than not, and B's later hearings repeat it; C's do
not. So:

- the reference: the ``chunks`` chunks from the first one whose chorusness
  (mean of it and its two neighbours) reaches ``threshold`` of the track's
  largest;
- ``match(c)``: the best fine phrase similarity (:func:`models.nets.phrase_similarity`,
  the ~12 s phrase at slot resolution) of chunk ``c`` to a reference chunk,
  clipped to [0, 1]; 1 on the reference itself;
- ``chorusness'(c) = chorusness(c) * (floor + (1 - floor) * match(c)) ** power``.

It reads the chunks' slot chroma, which the scorer keeps in its chunk
vectors; only the reference's columns of the similarity are computed
(O(chunks) per call). It applies to final highlights, and to provisional ones
with ``window.first_chorus_provisional``
(:meth:`models.detect.Detector.slot_curves`): the streamed final highlight
comes from the same function as offline detection. Over a track so far the
first chorus-like phrase is often not the chorus yet: with the final model's
chorusness on provisional contexts the weight lowered the val c50 of
highlights taken half-way through each track, with the provisional head's
(trained on tracks cut short) it raised it (docs/evaluation.md).
``window.first_chorus`` (the power; 0 leaves the chorusness as it is), its
three settings and ``first_chorus_provisional`` were chosen on the validation split.
"""

from __future__ import annotations

import numpy as np
import torch

from models.config import WindowConfig
from models.errors import InputError
from models.nets import phrase_similarity

SMOOTH = 3  # chunks averaged when looking for the first chorus-like one


def reference(chorusness: np.ndarray, threshold: float, chunks: int) -> np.ndarray:
    """The first chorus-like phrase: indices of ``chunks`` chunks (fewer at the end)."""
    ch = np.asarray(chorusness, np.float64)
    if len(ch) == 0:
        return np.zeros(0, np.int64)
    pad = np.pad(ch, (SMOOTH // 2, SMOOTH - 1 - SMOOTH // 2), mode="edge")
    smooth = np.convolve(pad, np.ones(SMOOTH) / SMOOTH, "valid")
    first = int(np.flatnonzero(smooth >= threshold * smooth.max())[0])
    return np.arange(first, min(len(ch), first + chunks))


def match(slot_chroma: np.ndarray, slots: int, ref: np.ndarray) -> np.ndarray:
    """Per chunk, its phrase's best similarity to a ``ref`` chunk's, in [0, 1] (1 on ``ref``)."""
    fine = np.asarray(slot_chroma, np.float32)
    if len(ref) == 0:
        return np.zeros(len(fine))
    with torch.inference_mode():
        sim = phrase_similarity(torch.from_numpy(fine[None]), torch.tensor([len(fine)]), slots,
                                torch.from_numpy(np.asarray(ref, np.int64)))
    out = np.clip(sim[0].numpy().astype(np.float64).max(axis=1), 0.0, 1.0)
    out[ref] = 1.0
    return out


def weigh(chorusness: np.ndarray, slot_chroma: np.ndarray | None, slots: int,
          cfg: WindowConfig) -> np.ndarray:
    """The weighted chorusness (module docstring); ``cfg.first_chorus`` = 0: as it is."""
    chorusness = np.asarray(chorusness, np.float64)
    if cfg.first_chorus == 0 or len(chorusness) == 0:
        return chorusness
    if slot_chroma is None or len(slot_chroma) != len(chorusness):
        rows = None if slot_chroma is None else len(slot_chroma)
        raise InputError(f"first_chorus: {rows} rows of slot chroma for "
                         f"{len(chorusness)} chorusness values")
    ref = reference(chorusness, cfg.first_chorus_threshold, cfg.first_chorus_chunks)
    w = match(slot_chroma, slots, ref)
    floor = cfg.first_chorus_floor
    return chorusness * (floor + (1.0 - floor) * w) ** cfg.first_chorus
