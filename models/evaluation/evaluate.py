"""Chorus correspondence of the model's highlight and of the baselines (``hookstream eval``).

Every song with chorus annotations is decoded once and scored once by the
detector (exactly as :meth:`models.detect.Detector.detect_file` does); all
methods then read the same :class:`~models.scorer.TrackScores`:

==============  ==============================================================
hookstream      the detector's own highlight (its config's window: gamma, beta, weights)
attention       Huang 2017's pure attention window (gamma = beta = 1) over the model's
                own curve (attention or chorusness, without recurrence / first_chorus)
fused           CRAN eq. 9-10 with the paper's gamma = 0.1, beta = 0.5
fused-0.5       CRAN eq. 9-10 with gamma = beta = 0.5
energy          Ha et al.'s "Mel" baseline: highest summed mel energy
repetition      the window that repeats most (chroma self-similarity)
first30         the first ``length_s`` seconds
middle30        ``length_s`` seconds around the middle of the track
==============  ==============================================================

(first30/middle30 keep their names when ``length_s`` is not 30.) Metrics are
those of :mod:`models.evaluation.metrics`; ``auc`` reads each method's score curve per
0.30 s slot (per chroma block for ``repetition``), before the window and
without eq. 10's energy-rise bonus; first30/middle30 have no curve.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from models.evaluation import baselines
from models.audio import decode
from models.config import WindowConfig
from models.detect import Detector, track_id_for
from models.errors import ConfigError, HookstreamError, InputError
from models.training.manifest import Song
from models.evaluation.metrics import METRICS, coverage, curve_auc, summarise
from models.window import Highlight, fused_curve, select

REPETITION_HOP_S = 0.5
# (gamma, beta) of the model-window variants; CRAN Table 3 gives beta = 0.5, gamma = 0.1.
VARIANTS = {"attention": (1.0, 1.0), "fused": (0.1, 0.5), "fused-0.5": (0.5, 0.5)}
METHODS = ("hookstream", *VARIANTS, "energy", "repetition", "first30", "middle30")


@dataclass(frozen=True)
class SongEval:
    """One evaluated song: its highlights, metrics and the curves behind them.

    ``curves`` maps a curve name (``energy``, ``attention``, ``repetition``)
    to ``(times_s, values)``, values scaled to [0, 1].
    """

    id: str
    audio: str
    duration_s: float
    chorus: tuple[tuple[float, float], ...]
    highlights: dict[str, Highlight]
    metrics: dict[str, dict]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)


@dataclass(frozen=True)
class EvalResult:
    songs: tuple[SongEval, ...]
    summary: dict[str, dict]  # method -> {c100, c50, precision, auc}
    failed: tuple[tuple[str, str], ...]  # (song id, reason)
    model: str
    length_s: float
    split: str | None = None
    window: dict = field(default_factory=dict)  # the detector's window config

    def as_json(self) -> dict:
        """The ``hookstream eval --json`` document."""
        methods = {m: {k: _round(v) for k, v in values.items()} for m, values in self.summary.items()}
        return {"songs": len(self.songs), "methods": methods, "failed": len(self.failed),
                "model": self.model, "split": self.split, "length_s": self.length_s,
                "window": self.window}

    def table(self) -> str:
        """The metrics as an aligned text table, one method per row."""
        head = f"{'method':<12}" + "".join(f"{k:>11}" for k in METRICS)
        rows = [head, "-" * len(head)]
        for method, values in self.summary.items():
            rows.append(f"{method:<12}" + "".join(
                f"{'-' if values[k] is None else f'{values[k]:.3f}':>11}" for k in METRICS))
        return "\n".join(rows)


def evaluate(songs: Sequence[Song], detector: Detector, *, length_s: float | None = None,
             split: str | None = None, progress: bool = True) -> EvalResult:
    """Evaluate the detector and the baselines on every annotated song.

    Parameters
    ----------
    songs : manifest entries; those without chorus spans (or outside ``split``) are ignored
    detector : the detector whose highlight is the ``hookstream`` method
    length_s : highlight length in seconds; must equal the detector's window
        length (default: that length)
    split : only songs of this split (None: all)
    progress : show a tqdm bar on stderr

    A song that fails to decode or score is reported on stderr and listed in
    ``EvalResult.failed``; the others are still evaluated.
    """
    from tqdm import tqdm

    window = detector.cfg.window
    length_s = window.length_s if length_s is None else float(length_s)
    if abs(length_s - window.length_s) > 1e-9:
        raise ConfigError(f"eval: length_s = {length_s} differs from the detector's window "
                          f"length {window.length_s}; build the detector with that length")
    todo = [s for s in songs if s.chorus and (split is None or s.split == split)]
    if not todo:
        where = f" in split {split!r}" if split is not None else ""
        raise InputError(f"eval: no songs with chorus annotations{where}")
    records, failed = [], []
    for song in tqdm(todo, desc="eval", unit="song", disable=not progress, file=sys.stderr):
        try:
            records.append(evaluate_song(song, detector, length_s=length_s))
        except HookstreamError as exc:
            failed.append((song.id, str(exc)))
            tqdm.write(f"eval: skipped song {song.id!r}: {exc}", file=sys.stderr)
    summary = summarise([r.metrics for r in records]) if records else {
        m: dict.fromkeys(METRICS) for m in METHODS}
    return EvalResult(songs=tuple(records), summary=summary, failed=tuple(failed),
                      model=detector.scorer.model_name, length_s=length_s, split=split,
                      window={"gamma": window.gamma, "beta": window.beta,
                              "recurrence": window.recurrence,
                              "first_chorus": window.first_chorus,
                              "first_chorus_threshold": window.first_chorus_threshold,
                              "first_chorus_chunks": window.first_chorus_chunks,
                              "first_chorus_floor": window.first_chorus_floor})


def evaluate_song(song: Song, detector: Detector, *, length_s: float) -> SongEval:
    """All methods' highlights and metrics for one song (see the module docstring)."""
    sr = detector.ckpt.mel.sample_rate
    samples = decode(song.audio, sr=sr, max_duration_s=detector.cfg.scorer.max_duration_s)
    detection = detector.detect_samples(track_id_for(song.audio), samples)  # = detect_file
    scores = detection.scores
    duration = scores.duration_s
    chorus = tuple((s, min(e, duration)) for s, e in song.chorus if s < duration)
    if not chorus:
        raise InputError(f"{song.audio}: every chorus span starts after the audio's end "
                         f"({duration:.1f} s)")
    slot_s = detector.scorer.slot_seconds
    attention, energy = detector.slot_curves(scores)  # what the detector's own window reads
    # the variants and baselines read the model's own curve, without the window's weights
    plain, _ = detector.slot_curves(scores, replace(detector.cfg.window, recurrence=0.0,
                                                    first_chorus=0.0))
    slot_times = (np.arange(len(energy)) + 0.5) * slot_s
    rep_times, repetition = baselines.repetition_curve(samples, sr, hop_s=REPETITION_HOP_S)

    highlights: dict[str, Highlight] = {"hookstream": detection.highlight}
    score_curves: dict[str, tuple[np.ndarray, np.ndarray] | None] = {
        "hookstream": (slot_times, fused_curve(attention, energy, detector.cfg.window.gamma)[0])}
    for name, (gamma, beta) in VARIANTS.items():
        cfg = WindowConfig(length_s=length_s, gamma=gamma, beta=beta)
        highlights[name] = select(plain, energy, slot_s=slot_s, duration_s=duration, cfg=cfg)
        score_curves[name] = (slot_times, fused_curve(plain, energy, gamma)[0])
    highlights["energy"] = baselines.energy_highlight(energy, slot_s=slot_s, duration_s=duration,
                                                      length_s=length_s)
    score_curves["energy"] = (slot_times, energy)
    highlights["repetition"] = baselines.curve_window(
        repetition, step_s=REPETITION_HOP_S, duration_s=duration, length_s=length_s)
    score_curves["repetition"] = (rep_times, repetition)
    highlights["first30"] = baselines.first_window(duration, length_s)
    highlights["middle30"] = baselines.middle_window(duration, length_s)

    metrics = {}
    for name in METHODS:
        h = highlights[name]
        curve = score_curves.get(name)
        metrics[name] = {**coverage((h.start_s, h.end_s), chorus),
                         "auc": curve_auc(*curve, chorus) if curve is not None else None}
    _, scaled_energy = fused_curve(plain, energy, 0.0)
    curves = {"energy": (slot_times, scaled_energy),
              "attention": (slot_times, fused_curve(plain, energy, 1.0)[0]),
              "repetition": (rep_times, repetition)}
    return SongEval(id=song.id, audio=str(song.audio), duration_s=duration, chorus=chorus,
                    highlights=highlights, metrics=metrics, curves=curves)


def window_grid(result: EvalResult, *, slot_s: float, gammas: Sequence[float],
                betas: Sequence[float]) -> list[dict]:
    """c50 / precision / c100 of the model's window for every (gamma, beta).

    Re-runs only the window on each song's stored attention and energy
    curves (no decoding or scoring), so a platform can choose eq. 9-10's
    weights on its own validation split in seconds. Rows are sorted by
    c50 + precision, best first.
    """
    rows = []
    for gamma in gammas:
        for beta in betas:
            cfg = WindowConfig(length_s=result.length_s, gamma=gamma, beta=beta)
            per_song = []
            for song in result.songs:
                attention = song.curves["attention"][1]
                energy = song.curves["energy"][1]
                h = select(attention, energy, slot_s=slot_s, duration_s=song.duration_s, cfg=cfg)
                per_song.append(coverage((h.start_s, h.end_s), song.chorus))
            row = {"gamma": gamma, "beta": beta}
            for key in ("c100", "c50", "precision"):
                row[key] = float(np.mean([float(m[key]) for m in per_song])) if per_song else None
            rows.append(row)
    return sorted(rows, key=lambda r: -(r["c50"] + r["precision"]))


def write_report(result: EvalResult, out_dir: str | Path, command: str) -> dict[str, Path]:
    """Write ``report.md``, ``metrics.png``, ``songs.png`` and ``metrics.json`` to ``out_dir``.

    Returns
    -------
    dict mapping each file's role (``report``, ``metrics``, ``songs``, ``json``) to its path
    """
    from models.evaluation import plots as evaluate_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "metrics": out / "metrics.png",
             "songs": out / "songs.png", "json": out / "metrics.json"}
    evaluate_plots.plot_metrics(result.summary, paths["metrics"],
                                title=f"{result.model}, {len(result.songs)} songs")
    evaluate_plots.plot_songs(result.songs, paths["songs"])
    paths["json"].write_text(json.dumps(result.as_json(), indent=2) + "\n")
    paths["report"].write_text(report_markdown(result, command))
    return paths


def report_markdown(result: EvalResult, command: str) -> str:
    """The markdown report: what was run, on what, and the metrics table."""
    lines = [
        "# hookstream eval",
        "",
        "```",
        command,
        "```",
        "",
        f"- model: `{result.model}`",
        f"- window: {result.length_s:g} s, detector gamma = {result.window.get('gamma')}, "
        f"beta = {result.window.get('beta')}",
        f"- split: {result.split if result.split is not None else 'all'}",
        f"- songs: {len(result.songs)} evaluated, {len(result.failed)} failed",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for method, values in result.summary.items():
        cells = ["-" if values[k] is None else f"{values[k]:.3f}" for k in METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "c100: share of songs whose highlight contains a whole chorus section; "
        "c50: covers at least half of one (Huang et al. 2017 §IV.B); precision: mean share "
        "of the highlight inside a chorus; auc: mean per-song ROC AUC of the method's score "
        "curve against the chorus mask (none for fixed windows).",
        "",
        "![metrics](metrics.png)",
        "",
        "![songs](songs.png)",
    ]
    if result.failed:
        lines += ["", "## Failed songs", ""]
        lines += [f"- `{song_id}`: {reason}" for song_id, reason in result.failed]
    return "\n".join(lines) + "\n"


def _round(value):
    return None if value is None else round(float(value), 4)
