import numpy as np
import pytest

from models.errors import InputError
from models.evaluation.metrics import chorus_mask, coverage, curve_auc, merge_spans, summarise


@pytest.mark.parametrize(("highlight", "chorus", "expected"), [
    # highlight      chorus spans                  c100   c50    precision
    ((10, 40), [(15, 35)],                         (True, True, 20 / 30)),   # whole chorus inside
    ((10, 40), [(10, 40)],                         (True, True, 1.0)),       # exact cover
    ((10, 40), [(25, 55)],                         (False, True, 15 / 30)),  # half of it: c50 holds
    ((10, 40), [(26, 56)],                         (False, False, 14 / 30)),  # just under half
    ((10, 40), [(50, 70)],                         (False, False, 0.0)),     # no overlap
    ((10, 40), [(40, 60)],                         (False, False, 0.0)),     # touching is no overlap
    ((10, 40), [(0, 12), (20, 30), (38, 80)],      (True, True, 14 / 30)),   # several choruses
    ((10, 40), [(0, 100)],                         (False, False, 1.0)),     # inside a long chorus
    ((0, 30), [(5, 20), (40, 55)],                 (True, True, 0.5)),
])
def test_coverage(highlight, chorus, expected):
    got = coverage(highlight, chorus)
    assert set(got) == {"c100", "c50", "precision"}
    assert (got["c100"], got["c50"]) == expected[:2]
    assert got["precision"] == pytest.approx(expected[2])


def test_coverage_picks_the_best_section_and_counts_overlapping_spans_once():
    # 5 of the 40 s chorus and 6 of the 10 s one: the short one reaches 50 %
    assert coverage((0, 30), [(25, 65), (-0.0, 0.0), (24, 34)])["c50"] is True
    assert coverage((0, 30), [(0, 20), (10, 25)])["precision"] == pytest.approx(25 / 30)
    assert coverage((10.0005, 39.9995), [(10, 40)])["c100"] is True  # millisecond rounding
    assert coverage((5, 5), [(0, 10)])["precision"] == 0.0


def test_coverage_rejects_bad_spans():
    with pytest.raises(InputError, match="highlight"):
        coverage((40, 10), [(0, 1)])
    with pytest.raises(InputError, match="chorus span"):
        coverage((0, 10), [(0, float("nan"))])


def test_curve_auc_perfect_inverted_and_undefined():
    times = np.arange(0, 60, 1.0) + 0.5
    chorus = [(20, 30), (45, 50)]
    mask = chorus_mask(times, chorus)
    assert mask.sum() == 15 and mask[20] and not mask[30]
    assert curve_auc(times, mask.astype(float), chorus) == 1.0
    assert curve_auc(times, -mask.astype(float), chorus) == 0.0
    assert curve_auc(times, np.ones(60), chorus) == 0.5
    assert curve_auc(times, mask.astype(float), [(0, 100)]) is None  # all chorus
    assert curve_auc(times, mask.astype(float), [(80, 90)]) is None  # no chorus
    with pytest.raises(InputError, match="same length"):
        curve_auc(times, np.ones(5), chorus)


def test_summarise_means_per_method_and_skips_missing_auc():
    per_song = [
        {"a": {"c100": True, "c50": True, "precision": 1.0, "auc": 0.5},
         "b": {"c100": False, "c50": True, "precision": 0.2, "auc": None}},
        {"a": {"c100": False, "c50": True, "precision": 0.5, "auc": None},
         "b": {"c100": False, "c50": False, "precision": 0.4, "auc": None}},
    ]
    assert summarise(per_song) == {
        "a": {"c100": 0.5, "c50": 1.0, "precision": 0.75, "auc": 0.5},
        "b": {"c100": 0.0, "c50": 0.5, "precision": pytest.approx(0.3), "auc": None},
    }


def test_merge_spans():
    assert merge_spans([(5, 10), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]
