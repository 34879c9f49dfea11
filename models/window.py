"""The highlight window: the consecutive span with the highest total score.

Huang 2017 §II.C slides a window over the chunk attention and keeps the span
with the largest sum. Here the attention is spread over 0.30 s slots (a chunk's
attention split across its slots by their share of its frames), so the window
can start between chunk boundaries, and the slot curve can be fused with the
mel energy as in CRAN (Ha et al. 2018) eq. 9-10:

    e~(n) = gamma * a(n) + (1 - gamma) * E(n)                          (9)
    H(n)  = beta * sum_{s<S} e~(n+s) + (1 - beta) * (dE(n) + d2E(n))   (10)

with a(n) the slot attention scaled to a maximum of 1, E(n) the slot energy
min-max scaled to [0, 1], dE/d2E its first and second differences at the
window start (so a sudden rise is preferred), and S the window in slots.
gamma = beta = 1 is Huang's pure attention window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.config import WindowConfig

TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Highlight:
    start_s: float
    end_s: float
    score: float  # mean fused salience per slot inside the window, in [0, 1] when beta = 1

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def best_window(curve: np.ndarray, width: int, *, bonus: np.ndarray | None = None,
                allowed: np.ndarray | None = None) -> tuple[int, float]:
    """Start index and value of the best ``width``-long window over ``curve``.

    The value is ``sum(curve[i:i+width]) + bonus[i]``. Ties go to the earliest
    start. ``width`` >= len(curve) returns (0, whole sum). ``allowed``
    (bool per start, ``len(curve) - width + 1``) restricts the starts.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if width >= len(curve):
        return 0, float(curve.sum() + (bonus[0] if bonus is not None and len(bonus) else 0.0))
    csum = np.concatenate([[0.0], np.cumsum(curve)])
    sums = csum[width:] - csum[:-width]  # sums[i] = curve[i:i+width].sum()
    if bonus is not None:
        sums = sums + np.asarray(bonus, np.float64)[: len(sums)]
    if allowed is not None:
        sums = np.where(allowed[: len(sums)], sums, -np.inf)
    # The curves come from float32 networks: batching or thread count moves them by ~1e-7.
    # Windows within a relative 1e-6 of the best count as tied, and the earliest wins, so
    # the streaming and offline paths pick the same span.
    best = sums.max()
    i = int(np.flatnonzero(sums >= best - TIE_TOLERANCE * max(1.0, abs(best)))[0])
    return i, float(sums[i])


def slot_attention(attention: np.ndarray, chunk_lengths: np.ndarray, slot_frames: int,
                   n_slots: int, chunk_frames: int) -> np.ndarray:
    """Spread chunk attention over slots at a constant density per frame.

    A full chunk's attention is split evenly over its slots. A final partial
    chunk keeps the density of a full one (``a / chunk_frames`` per frame), so
    a 1 s tail is not favoured for packing a whole chunk's attention into
    fewer slots. Slots past the scored chunks get 0.
    """
    out = np.zeros(n_slots, np.float64)
    pos = 0
    for a, length in zip(attention, chunk_lengths):
        for start in range(0, int(length), slot_frames):
            if pos < n_slots:
                out[pos] = a * min(slot_frames, length - start) / chunk_frames
            pos += 1
    return out


def fused_curve(attention_slots: np.ndarray, energy_slots: np.ndarray, gamma: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """CRAN eq. 9 per slot: (e~, scaled energy E); both in [0, 1]."""
    a = _scale_max(attention_slots)
    e = _scale_minmax(energy_slots)
    return gamma * a + (1.0 - gamma) * e, e


def select(attention_slots: np.ndarray, energy_slots: np.ndarray, *, slot_s: float,
           duration_s: float, cfg: WindowConfig) -> Highlight:
    """Pick the highlight of one track from its slot curves (eq. 9-10)."""
    return select_top(attention_slots, energy_slots, slot_s=slot_s, duration_s=duration_s,
                      cfg=cfg, k=1)[0]


def select_top(attention_slots: np.ndarray, energy_slots: np.ndarray, *, slot_s: float,
               duration_s: float, cfg: WindowConfig, k: int) -> list[Highlight]:
    """Up to ``k`` non-overlapping highlights, best first; the first is :func:`select`'s.

    Greedy: the best window (ties to the earliest start), then the best one
    that does not overlap any chosen one, and so on, until ``k`` are chosen or
    no window fits. A track no longer than the window has one highlight, the
    whole track.
    """
    if k < 1:
        raise ValueError(f"k = {k}: at least one highlight")
    n = len(energy_slots)
    if duration_s <= cfg.length_s or n == 0:
        curve, _ = fused_curve(attention_slots, energy_slots, cfg.gamma) if n else (np.zeros(1), None)
        return [Highlight(0.0, float(duration_s), float(np.mean(curve)) if n else 0.0)]
    curve, energy = fused_curve(attention_slots, energy_slots, cfg.gamma)
    width = max(1, int(round(cfg.length_s / slot_s)))
    bonus = None
    if cfg.beta < 1.0:
        d1 = np.diff(energy, prepend=energy[0])
        d2 = np.diff(d1, prepend=d1[0])
        bonus = (1.0 - cfg.beta) * (d1 + d2) / cfg.beta
    free = np.ones(max(1, n - width + 1), bool)  # window starts still allowed
    out: list[Highlight] = []
    block = int(np.ceil(cfg.length_s / slot_s - 1e-9))  # slots a window covers, in seconds
    while len(out) < k and free.any():
        i, _ = best_window(curve, width, bonus=bonus, allowed=free)
        start = i * slot_s
        end = min(start + cfg.length_s, duration_s)
        start = max(0.0, end - cfg.length_s)
        h = Highlight(round(start, 3), round(end, 3), float(curve[i:i + width].mean()))
        free[i] = False
        if any(h.start_s < o.end_s and o.start_s < h.end_s for o in out):
            continue  # clipped at the track's end onto a chosen span
        out.append(h)
        free[max(0, i - block + 1):i + block] = False
    return out


def _scale_max(x: np.ndarray) -> np.ndarray:
    m = float(np.max(x)) if len(x) else 0.0
    return np.asarray(x, np.float64) / m if m > 0 else np.zeros(len(x))


def _scale_minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros(len(x))


def highlights_json(spans) -> list[dict]:
    """``[{"start_s", "end_s", "score"}, ...]`` as in detect's JSON and the final event."""
    return [{"start_s": h.start_s, "end_s": h.end_s, "score": round(h.score, 6)} for h in spans]
