"""Figures of ``hookstream eval --report``: metrics per method, and a few songs' curves.

Rendered with matplotlib's Agg backend (no display needed). Regenerate with
``hookstream eval --manifest FILE --report DIR``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

BAR_METRICS = ("c100", "c50", "precision")
CURVES = (("energy", "mel energy", "tab:orange"), ("attention", "attention", "tab:blue"),
          ("repetition", "repetition", "tab:green"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(summary: Mapping[str, Mapping[str, float | None]], path: str | Path, *,
                 title: str = "") -> Path:
    """Grouped bars: one group per method, one bar per metric (c100, c50, precision)."""
    plt = _pyplot()
    methods = list(summary)
    x = np.arange(len(methods))
    width = 0.8 / len(BAR_METRICS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 2), 3.8))
    for k, metric in enumerate(BAR_METRICS):
        values = [summary[m][metric] or 0.0 for m in methods]
        bars = ax.bar(x + (k - (len(BAR_METRICS) - 1) / 2) * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(x, methods, rotation=20)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("share")
    ax.set_title(title or "chorus correspondence per method")
    ax.legend(ncols=len(BAR_METRICS), fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_songs(songs: Sequence, path: str | Path, *, max_songs: int = 4) -> Path:
    """Per song: energy, attention and repetition curves over time, chorus spans shaded,
    and every method's highlight as a bar below the curves.

    ``songs`` are :class:`models.evaluation.evaluate.SongEval` records; the first ``max_songs`` are drawn.
    """
    plt = _pyplot()
    shown = list(songs)[:max_songs]
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(10, 3.2 * max(1, len(shown))),
                             squeeze=False)
    for ax, song in zip(axes[:, 0], shown):
        for start, end in song.chorus:
            ax.axvspan(start, end, color="0.85", zorder=0)
        for key, label, color in CURVES:
            if key in song.curves:
                times, values = song.curves[key]
                ax.plot(times, values, color=color, lw=1, label=label)
        methods = list(song.highlights)
        for i, method in enumerate(methods):
            h = song.highlights[method]
            y = -0.12 - 0.1 * i
            ax.plot([h.start_s, h.end_s], [y, y], lw=3, solid_capstyle="butt",
                    color=plt.cm.tab10(i % 10))
            ax.text(h.end_s + 0.5, y, method, fontsize=6, va="center")
        ax.set_xlim(0, song.duration_s * 1.08)
        ax.set_ylim(-0.17 - 0.1 * len(methods), 1.05)
        ax.set_yticks([0, 0.5, 1])
        ax.set_title(f"{song.id} (chorus shaded)", fontsize=9)
        ax.set_xlabel("time (s)")
    if shown:
        axes[0, 0].legend(fontsize=7, loc="upper right", ncols=3)
    else:
        axes[0, 0].text(0.5, 0.5, "no songs evaluated", ha="center", transform=axes[0, 0].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
