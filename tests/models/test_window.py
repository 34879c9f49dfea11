"""The window picks the known best span; edge cases: short tracks, ties, odd lengths."""

import numpy as np
import pytest

from models.config import WindowConfig
from models.window import best_window, select, slot_attention, select_top

#            slot: 0  1  2  3  4  5  6  7  8  9
CASES = [
    ("peak",      [0, 0, 1, 5, 5, 1, 0, 0, 0, 0], 3, 2),  # 1+5+5 ties 5+5+1: earliest
    ("late",      [1, 0, 0, 0, 0, 0, 0, 2, 2, 2], 3, 7),
    ("tie-first", [3, 0, 0, 3, 0, 0, 0, 0, 0, 0], 1, 0),
    ("plateau",   [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 4, 0),
    ("edge-end",  [0, 0, 0, 0, 0, 0, 0, 0, 1, 9], 2, 8),
]


@pytest.mark.parametrize("name,curve,width,expected", CASES, ids=[c[0] for c in CASES])
def test_best_window(name, curve, width, expected):
    start, total = best_window(np.array(curve, float), width)
    assert start == expected
    assert total == pytest.approx(sum(curve[expected:expected + width]))


def test_width_longer_than_curve_takes_everything():
    assert best_window(np.array([1.0, 2.0]), 5) == (0, 3.0)


def test_bonus_breaks_plateau():
    start, _ = best_window(np.ones(10), 3, bonus=np.eye(8)[5])
    assert start == 5


def test_select_short_track_gets_whole_track():
    h = select(np.ones(50), np.ones(50), slot_s=0.3, duration_s=15.0, cfg=WindowConfig(30.0))
    assert (h.start_s, h.end_s) == (0.0, 15.0)


def test_select_length_not_multiple_of_slot_and_clipped_to_end():
    att = np.zeros(200)
    att[-10:] = 1.0  # the best material is at the very end
    h = select(att, np.zeros(200), slot_s=0.3, duration_s=60.0, cfg=WindowConfig(10.0))
    assert h.end_s == pytest.approx(60.0) and h.duration_s == pytest.approx(10.0)


def test_select_finds_span_finer_than_chunk():
    # 3 chunks of 10 slots; attention concentrated in chunk 1, window of 15 slots.
    att = slot_attention(np.array([0.1, 0.8, 0.1]), np.array([130, 130, 130]), 13, 30, 130)
    h = select(att, np.zeros(30), slot_s=0.3, duration_s=9.0, cfg=WindowConfig(4.5))
    assert 0.0 < h.start_s <= 3.0 and h.end_s >= 6.0


def test_energy_fusion_prefers_loud_part_when_gamma_zero():
    energy = np.r_[np.zeros(50), np.ones(30), np.zeros(50)]
    att = np.r_[np.ones(50), np.zeros(80)]
    cfg = WindowConfig(length_s=9.0, gamma=0.0, beta=1.0)
    h = select(att, energy, slot_s=0.3, duration_s=130 * 0.3, cfg=cfg)
    assert h.start_s == pytest.approx(50 * 0.3)
    h_att = select(att, energy, slot_s=0.3, duration_s=130 * 0.3, cfg=WindowConfig(9.0, gamma=1.0))
    assert h_att.start_s == 0.0


def test_slot_attention_keeps_density_of_partial_chunk():
    att = slot_attention(np.array([0.5, 0.3, 0.2]), np.array([130, 130, 50]), 13, 24, 130)
    assert att[:10] == pytest.approx(np.full(10, 0.05))
    assert att[10:20].sum() == pytest.approx(0.3)
    # The 50-frame tail keeps a full chunk's density: 0.2/130 per frame, not 0.2/50.
    assert att[20:] == pytest.approx([0.2 * 13 / 130] * 3 + [0.2 * 11 / 130])


def test_select_top_gives_non_overlapping_spans_best_first():
    # Three bumps of decreasing height; windows of 10 slots (3 s).
    att = np.zeros(120)
    att[10:20], att[60:70], att[95:105] = 1.0, 0.8, 0.6
    cfg = WindowConfig(3.0, gamma=1.0)
    top = select_top(att, np.zeros(120), slot_s=0.3, duration_s=36.0, cfg=cfg, k=5)
    assert top[0] == select(att, np.zeros(120), slot_s=0.3, duration_s=36.0, cfg=cfg)
    assert [h.start_s for h in top[:3]] == pytest.approx([3.0, 18.0, 28.5])
    assert [h.score for h in top[:3]] == sorted([h.score for h in top[:3]], reverse=True)
    spans = sorted((h.start_s, h.end_s) for h in top)
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))  # no overlap
    assert 3 <= len(top) <= 5


def test_select_top_on_a_short_track_is_the_whole_track():
    top = select_top(np.ones(10), np.ones(10), slot_s=0.3, duration_s=3.0, cfg=WindowConfig(30.0), k=3)
    assert len(top) == 1 and (top[0].start_s, top[0].end_s) == (0.0, 3.0)
