"""Offline detection: a file in, a highlight out, through the streaming scorer itself.

``Detector.detect_samples`` feeds the whole signal to :class:`~models.scorer.Scorer`
as one piece and finalizes it, so offline and streaming results come from one
implementation (the streaming worker feeds the same scorer piece by piece).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import checkpoint as ckpts
from models import first_chorus, recurrence
from models.audio import decode
from models.config import DetectConfig, WindowConfig
from models.errors import ConfigError
from models.scorer import Scorer, TrackScores
from models.window import Highlight, highlights_json, select_top, slot_attention  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Detection:
    track_id: str
    highlight: Highlight
    scores: TrackScores
    model: str
    highlights: tuple[Highlight, ...] = ()  # up to top_k non-overlapping spans, best first

    def as_json(self, **extra) -> dict:
        h = self.highlight
        out = {**extra, "track_id": self.track_id, "start_s": h.start_s, "end_s": h.end_s,
               "duration_s": round(self.scores.duration_s, 3), "score": round(h.score, 6),
               "model": self.model,
               "highlights": highlights_json(self.highlights or (h,))}
        if self.scores.labels is not None:
            out["labels"] = {k: round(v, 4) for k, v in self.scores.labels.items()}
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def track_id_for(path: str | Path) -> str:
    """The track id of a file: its stem, as ``hookstream ingest`` uses by default."""
    return Path(path).stem


def provisional_head(setting: str | None, final: ckpts.Checkpoint) -> ckpts.Checkpoint | None:
    """The checkpoint that scores provisional contexts (``DetectConfig.provisional_checkpoint``).

    ``"auto"``: the shipped provisional head (:data:`models.checkpoint.PROVISIONAL_CHECKPOINT`)
    when it reads the same chunk vectors as ``final`` (the shipped default model, or one
    trained on its frozen CNN), else None; None: None (the final model scores them); a
    path: that checkpoint, refused with a :class:`ConfigError` unless it reads the same
    chunk vectors.
    """
    if setting is None:
        return None
    if setting == "auto":
        if not ckpts.PROVISIONAL_CHECKPOINT.is_file():
            return None
        head = ckpts.load(ckpts.PROVISIONAL_CHECKPOINT)
        return head if ckpts.chunk_vector_mismatch(final, head) is None else None
    head = ckpts.load(setting)
    why = ckpts.chunk_vector_mismatch(final, head)
    if why:
        raise ConfigError(f"provisional_checkpoint = {setting!r}: {why} than the model "
                          f"{final.name}; it must read the same chunk vectors (or set it to null)")
    return head


class Detector:
    def __init__(self, cfg: DetectConfig | None = None, ckpt: ckpts.Checkpoint | None = None):
        self.cfg = cfg or DetectConfig()
        self.ckpt = ckpt or ckpts.load(self.cfg.checkpoint)
        self.scorer = Scorer(self.ckpt, self.cfg.scorer, device=resolve_device(self.cfg.device),
                             provisional=provisional_head(self.cfg.provisional_checkpoint, self.ckpt))
        if self.cfg.window.recurrence > 0:
            _check_recurrence(self.ckpt, self.cfg.window.recurrence)

    def slot_curves(self, scores: TrackScores, window: WindowConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(attention or, for a chorus model, chorusness per slot; mel energy per slot).

        What the window reads (``window``: default this detector's window
        config). With ``window.recurrence`` > 0 a chorus model's chorusness is
        weighed by how strongly each passage recurs later
        (:func:`models.recurrence.weigh`); then, with ``window.first_chorus`` > 0
        and a model whose chunk vectors carry slot chroma, toward the material of
        the first chorus-like phrase (:func:`models.first_chorus.weigh`): always
        for final scores, for provisional ones with ``window.first_chorus_provisional``
        (on val it helped provisional highlights from the default model's
        provisional head and hurt those from the final model, docs/evaluation.md).
        """
        sc = self.scorer.cfg
        cfg = window or self.cfg.window
        if cfg.recurrence > 0:
            _check_recurrence(self.ckpt, cfg.recurrence)
            curve = recurrence.weigh(scores.chorusness, scores.chroma, cfg.recurrence)
        else:
            curve = scores.attention if scores.chorusness is None else scores.chorusness
        weigh = scores.final or cfg.first_chorus_provisional
        if weigh and scores.chorusness is not None and scores.slot_chroma is not None:
            curve = first_chorus.weigh(curve, scores.slot_chroma, self.ckpt.model.fine_slots, cfg)
        att = slot_attention(curve, scores.chunk_lengths, sc.slot_frames,
                             len(scores.slot_energy), sc.chunk_frames)
        return att, np.asarray(scores.slot_energy, np.float64)

    def highlight(self, scores: TrackScores, window: WindowConfig | None = None) -> Highlight:
        """The window over a track's (provisional or final) scores."""
        return self.highlights(scores, 1, window)[0]

    def highlights(self, scores: TrackScores, k: int, window: WindowConfig | None = None
                   ) -> tuple[Highlight, ...]:
        """Up to ``k`` non-overlapping highlights, best first (the first is :meth:`highlight`)."""
        att, energy = self.slot_curves(scores, window)
        return tuple(select_top(att, energy, slot_s=self.scorer.slot_seconds,
                                duration_s=scores.duration_s, cfg=window or self.cfg.window, k=k))

    def detect_samples(self, track_id: str, samples: np.ndarray, *, top_k: int = 1) -> Detection:
        state = self.scorer.step([(self.scorer.init_state(track_id), samples)],
                                 refresh=[False])[0]  # no provisional result is read
        scores = self.scorer.finalize([state])[0]
        spans = self.highlights(scores, top_k)
        return Detection(track_id, spans[0], scores, self.scorer.model_name, spans)

    def warm_up(self) -> None:
        """Score 4 s of silence once: the networks' and the front end's first-call costs
        (allocations, kernel choice) are paid here rather than on a real track."""
        sr = self.ckpt.mel.sample_rate
        self.detect_samples("warm-up", np.zeros(4 * sr, np.float32))

    def detect_file(self, path: str | Path, *, top_k: int = 1) -> Detection:
        samples = decode(path, sr=self.ckpt.mel.sample_rate,
                         max_duration_s=self.cfg.scorer.max_duration_s)
        return self.detect_samples(track_id_for(path), samples, top_k=top_k)


def _check_recurrence(ckpt: ckpts.Checkpoint, alpha: float) -> None:
    if not (ckpt.model.chorus_logits and ckpt.model.n_chroma):
        raise ConfigError(f"window.recurrence = {alpha}: model {ckpt.name!r} has no chorusness "
                          "and chunk chroma to weigh (a chorus model with n_chroma > 0 needed); "
                          "set it to 0")
