"""How well a highlight matches the annotated chorus sections.

Huang et al. 2017 §III.B/IV.B measure the *correspondence* of a thumbnail: the
share of a chorus section that the thumbnail covers, reported as the share of
songs where it is 100 % (a whole chorus inside the thumbnail) and at least
50 %. Here a song counts when *some* chorus section reaches the level (Huang
takes the section with the largest overlap in time; the two agree whenever
the choruses of a song have similar lengths). ``precision`` is the share of
the highlight inside any chorus (Ha et al. 2018 eq. 11 divided by the
highlight's duration), and ``auc`` tells how well a method's score curve
separates chorus from non-chorus times, independently of the window.

All times are in seconds; chorus spans are ``(start_s, end_s)`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from models.errors import InputError

Span = tuple[float, float]
METRICS = ("c100", "c50", "precision", "auc")
_TOLERANCE_S = 1e-3  # highlights are rounded to milliseconds


def coverage(highlight: Span, chorus: Sequence[Span]) -> dict:
    """Correspondence of one highlight with a song's chorus sections.

    Parameters
    ----------
    highlight : (start_s, end_s)
    chorus : sequence of (start_s, end_s), in any order, possibly overlapping

    Returns
    -------
    dict with
        c100 : bool, some chorus section lies wholly inside the highlight
            (within 1 ms);
        c50 : bool, the highlight covers at least half of some chorus section;
        precision : float in [0, 1], share of the highlight's duration inside
            the union of the chorus sections (0 for an empty highlight).
    """
    hs, he = _span(highlight, "highlight")
    spans = [_span(c, "chorus span") for c in chorus]
    fractions = [_overlap((hs, he), c) / (c[1] - c[0]) for c in spans if c[1] > c[0]]
    c100 = any(cs >= hs - _TOLERANCE_S and ce <= he + _TOLERANCE_S for cs, ce in spans if ce > cs)
    inside = sum(_overlap((hs, he), c) for c in merge_spans(spans))
    return {
        "c100": bool(c100),
        "c50": bool(fractions) and max(fractions) >= 0.5 - 1e-9,
        "precision": inside / (he - hs) if he > hs else 0.0,
    }


def chorus_mask(times: np.ndarray, chorus: Sequence[Span]) -> np.ndarray:
    """Boolean mask, shape of ``times``: True where ``start <= t < end`` for some span."""
    t = np.asarray(times, np.float64)
    mask = np.zeros(t.shape, bool)
    for start, end in chorus:
        mask |= (t >= start) & (t < end)
    return mask


def curve_auc(times: np.ndarray, values: np.ndarray, chorus: Sequence[Span]) -> float | None:
    """ROC AUC of a score curve against the chorus mask at the same times.

    Parameters
    ----------
    times : np.ndarray, shape (n,), seconds
    values : np.ndarray, shape (n,), higher means "more likely chorus"
    chorus : sequence of (start_s, end_s)

    Returns
    -------
    float in [0, 1] (1: every chorus time scores above every other time,
    0.5: chance), or None when the mask is all chorus or all non-chorus.
    """
    from sklearn.metrics import roc_auc_score

    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64)
    if times.shape != values.shape or times.ndim != 1:
        raise InputError(f"curve_auc: times {times.shape} and values {values.shape} "
                         "must be 1-D of the same length")
    mask = chorus_mask(times, chorus)
    if mask.all() or not mask.any():
        return None
    return float(roc_auc_score(mask, values))


def summarise(per_song: Sequence[Mapping[str, Mapping[str, object]]]) -> dict:
    """Mean of every metric per method over songs.

    Parameters
    ----------
    per_song : one mapping per song, ``{method: {"c100": bool, "c50": bool,
        "precision": float, "auc": float | None}}``

    Returns
    -------
    ``{method: {"c100": float, "c50": float, "precision": float, "auc": float | None}}``,
    methods in first-seen order. Booleans become the share of songs; ``auc``
    is the mean over the songs where it is defined, None where it never is.
    """
    methods: dict[str, list[Mapping[str, object]]] = {}
    for song in per_song:
        for method, values in song.items():
            methods.setdefault(method, []).append(values)
    out = {}
    for method, rows in methods.items():
        out[method] = {}
        for key in METRICS:
            got = [float(r[key]) for r in rows if r.get(key) is not None]
            out[method][key] = math.fsum(got) / len(got) if got else None
    return out


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Sorted union of spans: overlapping or touching spans joined."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _overlap(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _span(span: Sequence[float], name: str) -> Span:
    try:
        start, end = (float(v) for v in span)
    except (TypeError, ValueError):
        raise InputError(f"{name} {span!r}: expected (start_s, end_s)") from None
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise InputError(f"{name} {span!r}: expected finite start_s <= end_s")
    return start, end
