"""Per-track figure, as in Huang 2017 Fig. 4: mel-spectrogram, chunk attention, chosen span."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.scorer import TrackScores
from models.window import Highlight


def plot_track(out: str | Path, *, frames: np.ndarray, frame_s: float, scores: TrackScores,
               highlight: Highlight, title: str,
               chorus: list[tuple[float, float]] | None = None) -> Path:
    """Write a PNG with three panels sharing the time axis (seconds).

    frames : (n_frames, n_mels) log-mel; scores : the track's final scores.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.4, 0.5]})
    end = max(scores.duration_s, 1e-3)
    axes[0].imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, len(frames) * frame_s, 0, frames.shape[1]))
    axes[0].set_ylabel("mel band")
    axes[0].set_title(title)
    starts = np.concatenate([[0], np.cumsum(scores.chunk_lengths)[:-1]]) * frame_s
    widths = np.asarray(scores.chunk_lengths) * frame_s
    axes[1].bar(starts, scores.attention, width=widths, align="edge", color="tab:blue",
                edgecolor="white", linewidth=0.3)
    axes[1].set_ylabel("attention")
    for ax in axes[:2]:
        ax.axvspan(highlight.start_s, highlight.end_s, color="tab:green", alpha=0.18)
    axes[2].axvspan(highlight.start_s, highlight.end_s, color="tab:green", alpha=0.8,
                    label=f"highlight {highlight.start_s:.1f}-{highlight.end_s:.1f} s")
    for i, (s, e) in enumerate(chorus or []):
        axes[2].axvspan(s, e, ymin=0.0, ymax=0.4, color="gold", alpha=0.9,
                        label="chorus (annotated)" if i == 0 else None)
    axes[2].set_yticks([])
    axes[2].set_xlim(0, end)
    axes[2].set_xlabel("time (s)")
    axes[2].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
