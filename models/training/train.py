"""Offline training of the attention models on a song manifest (``hookstream train``).

Data flow, one stage per function::

    manifest -> cached log-mel (models.training.features) -> z-score with training-split
    statistics -> 3 s chunks -> batches of songs padded to the longest ->
    embed + attend -> binary cross-entropy on the song-level labels

Training crops each song to at most ``max_chunks`` full chunks (40 = 2 min)
at a random frame offset, to bound the time per batch (0/null: every full
chunk of the song, still at a random offset below one chunk, which jitters
the chunk grid). ``prefix_crop`` (share of songs, 0 by default) cuts training
songs to a random prefix of at least ``prefix_min_chunks`` chunks instead: the
scorer's provisional highlights attend over a track *so far*, whose last chunks
have not been heard again yet, and a model trained on whole songs only misreads
such contexts (docs/evaluation.md, "Provisional highlights").

Chorus supervision (``chorus_weight > 0``)
------------------------------------------
The songs' annotated chorus spans become a per-chunk target: the share of
the chunk's frames (by frame centre) inside a chorus. The attention logits
``u`` are trained against it with binary cross-entropy (weight
``chorus_weight``), jointly with the song-level labels, so the softmax
attention that pools the labels concentrates on choruses and ``sigmoid(u)``
is a chorusness curve; the model then needs ``model.chorus_logits: true``.
Songs without annotations contribute only the label loss. Several renders
of the same songs (``extra_manifests``: other soundfonts and arrangements)
add training songs; their validation songs join the validation set.
``gain_db`` shifts each training song's log-mel by a random gain in
[-gain_db, +gain_db] dB. With ``select_on: chorus`` early stopping keeps the
epoch with the best validation mean of c50 and precision of the highlight
window over the chorusness (:func:`chorus_metrics`), the target of the
project, instead of the label AUC. Validation scores
whole songs exactly as the streaming scorer's finalize does: full chunks plus
a final partial chunk of at least ``min_tail_frames`` (embedded on its own),
so validation metrics are those of ``hookstream detect``'s label outputs.

Starting from another model
---------------------------
``init_checkpoint`` starts from every weight of a checkpoint of the same
architecture (fine-tuning). ``cnn_from`` copies only another checkpoint's CNN
(``conv.*``, which must have the same shapes) and its z-score statistics, so
that a new recurrent half can be trained on a CNN that is already good;
``freeze_cnn`` keeps the CNN's weights as they start (no gradient, not in the
optimiser). The default model v3 is trained this way on v2's CNN
(``configs/train/chorus-pop909.yaml``).

Optimisers
----------
``adam`` (the default, lr 0.001): what trained best in a short comparison on
POP909 (115 train / 39 val songs, 20-chunk crops, 15 epochs of 4 steps, full
Huang model): val mean ROC AUC 0.70 with Adam at lr 0.001, against 0.54 with
SGD at lr 0.1 and no progress with SGD at lr 0.01. ``sgd`` is Huang 2017
§II.D's optimiser (momentum 0.9, batch 30; the paper gives no learning rate).
Ha 2018 §3.2 trains CRAN with Adam, lr 0.005, "decay 0.01": Keras's per-step
inverse-time learning-rate decay ``lr / (1 + decay * step)``, which is
``lr_decay`` here. ``weight_decay`` (L2) is available for both and is 0 by
default. Gradients are clipped to norm ``grad_clip`` (5) against LSTM
gradient spikes.

Reproducibility and resuming
----------------------------
The model is initialised from ``torch.manual_seed(seed)``; each epoch draws
its song order, crops and dropout masks from generators seeded with
``(seed, epoch)`` only. After every epoch ``<out>.resume/state.safetensors``
stores the current and best weights, the optimiser's state tensors (momentum
buffers, Adam moments and step counts), the normalisation statistics and, as
JSON metadata, the optimiser's hyperparameters, the step count, the history
and the early-stopping counters. No pickle. Resuming therefore continues
bit-for-bit: 1 epoch then ``--resume`` to 2 equals a straight 2-epoch run
(on the CPU; CUDA kernels such as cuDNN's LSTM are not guaranteed
deterministic). The resume folder is kept after training so that ``--resume
--epochs N`` can extend a run; it is not needed to use the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from models import checkpoint as ckpts
from models import nets
from models.training import card
from models.config import MelConfig, ScorerConfig, from_dict, load_yaml, to_dict
from models.errors import ConfigError, InputError
from models.training.features import build_feature_cache, cache_path, load_features, norm_stats
from models.training.manifest import Song, label_vocabulary, load_manifest
from models.scorer import chunk_chroma_values, whole_track_chunks

log = logging.getLogger(__name__)

PRESETS = {
    "huang": lambda n: nets.huang(n),
    "cran": lambda n: nets.cran(n),
    "tiny-huang": lambda n: nets.tiny("huang", n),
    "tiny-cran": lambda n: nets.tiny("cran", n),
}
OPTIMIZERS = ("sgd", "adam")
SELECT_ON = ("auc", "chorus")
# Section kinds of the auxiliary head, from POP909's phrase labels: lowercase (intro, outro,
# bridge: no melody) or no phrase, the first melodic material A, the second B (the chorus),
# and any later material (C, D, ..., X).
SECTION_KINDS = ("no_melody", "A", "B", "later")
PROB_EPS = 1e-7  # y is clamped to [eps, 1 - eps] before the log of the cross-entropy
RESUME_VERSION = 1
# Keys that may change between a run and its --resume without changing its results.
RESUMABLE_CHANGES = ("epochs", "patience", "out", "name", "num_threads", "feature_jobs",
                     "cache_dir", "device")


@dataclass(frozen=True)
class TrainConfig:
    """A training run, loaded from ``configs/train/NAME.yaml`` (see :func:`load_config`).

    Paths are relative to the current directory. ``model`` is a mapping with
    ``preset`` (one of :data:`PRESETS`) and any :class:`~models.nets.ModelConfig`
    field as an override; ``n_labels`` comes from ``labels``. ``labels``
    defaults to every label of the manifest (sorted); songs' labels outside
    the list are ignored. ``label_groups`` lists single-choice groups (each
    song has one label of the group, like major/minor) whose recall@1 is
    reported. ``max_chunks`` (0 or null: whole songs) bounds training crops.
    ``grad_clip`` is a maximum gradient norm (0: no clipping).
    """

    manifest: str
    out: str
    name: str
    cache_dir: str = "data/cache"
    model: Mapping[str, Any] = field(default_factory=lambda: {"preset": "huang"})
    labels: tuple[str, ...] | None = None
    label_groups: tuple[tuple[str, ...], ...] = ()
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: float = 0.0
    grad_clip: float = 5.0
    batch_size: int = 30
    epochs: int = 50
    patience: int = 8
    seed: int = 0
    max_chunks: int | None = 40
    prefix_crop: float = 0.0  # share of training songs cut to a random prefix (provisional contexts)
    prefix_min_chunks: int = 20
    device: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    num_threads: int | None = None
    feature_jobs: int = 1
    mel: MelConfig = field(default_factory=MelConfig)
    extra_manifests: tuple[str, ...] = ()
    chorus_weight: float = 0.0
    section_weight: float = 0.0
    later_weight: float = 1.0
    gain_db: float = 0.0
    select_on: str = "auc"  # auc | chorus
    init_checkpoint: str | None = None
    cnn_from: str | None = None  # a checkpoint whose CNN (and z-score statistics) this run starts from
    freeze_cnn: bool = False  # keep the CNN's weights as they start (from cnn_from / init_checkpoint)

    def __post_init__(self) -> None:
        for key in ("manifest", "out", "name", "cache_dir", "train_split", "val_split", "device"):
            value = getattr(self, key)
            _check(isinstance(value, str) and value != "", key, value, "must be a non-empty string")
        for key in ("lr", "momentum", "weight_decay", "lr_decay", "grad_clip", "chorus_weight",
                    "gain_db", "section_weight", "later_weight", "prefix_crop"):
            self._set(key, _number(key, getattr(self, key)))
        _check(0 <= self.prefix_crop <= 1, "prefix_crop", self.prefix_crop, "must be in [0, 1]")
        _check(self.lr > 0, "lr", self.lr, "must be positive")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        for key in ("weight_decay", "lr_decay", "grad_clip", "chorus_weight", "gain_db",
                    "section_weight"):
            _check(getattr(self, key) >= 0, key, getattr(self, key), "must be >= 0")
        _check(self.later_weight > 0, "later_weight", self.later_weight, "must be > 0")
        for key in ("init_checkpoint", "cnn_from"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value != ""), key, value,
                   "must be a checkpoint path or null")
        _check(not (self.init_checkpoint and self.cnn_from), "cnn_from", self.cnn_from,
               "and init_checkpoint exclude each other (init_checkpoint copies every weight)")
        _check(isinstance(self.freeze_cnn, bool), "freeze_cnn", self.freeze_cnn,
               "must be true or false")
        _check(not self.freeze_cnn or bool(self.cnn_from or self.init_checkpoint), "freeze_cnn",
               self.freeze_cnn, "needs cnn_from or init_checkpoint (a trained CNN to keep)")
        for key, low in (("batch_size", 1), ("epochs", 1), ("patience", 1), ("seed", 0),
                         ("feature_jobs", 1), ("prefix_min_chunks", 1)):
            value = getattr(self, key)
            _check(_is_int(value) and value >= low, key, value, f"must be an integer >= {low}")
        for key in ("max_chunks", "num_threads"):
            value = getattr(self, key)
            _check(value is None or (_is_int(value) and value >= 0), key, value,
                   "must be a non-negative integer or null")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer,
               f"expected one of {', '.join(OPTIMIZERS)}")
        _check(self.train_split != self.val_split, "val_split", self.val_split,
               "must differ from train_split")
        _check(self.select_on in SELECT_ON, "select_on", self.select_on,
               f"expected one of {', '.join(SELECT_ON)}")
        extra = self.extra_manifests or ()
        _check(isinstance(extra, (list, tuple)) and all(isinstance(m, str) and m for m in extra),
               "extra_manifests", extra, "must be a list of manifest paths")
        self._set("extra_manifests", tuple(extra))
        if isinstance(self.mel, Mapping):
            self._set("mel", from_dict(MelConfig, self.mel, prefix="mel."))
        _check(isinstance(self.mel, MelConfig), "mel", self.mel, "must be a mapping")
        if self.labels is not None:
            labels = self.labels
            _check(isinstance(labels, (list, tuple)) and len(labels) > 0
                   and all(isinstance(x, str) for x in labels)
                   and len(set(labels)) == len(labels), "labels", labels,
                   "must be a non-empty list of distinct strings (or null: the manifest's)")
            self._set("labels", tuple(labels))
        groups = self.label_groups or ()
        _check(isinstance(groups, (list, tuple)) and all(
            isinstance(g, (list, tuple)) and len(g) >= 2 and all(isinstance(x, str) for x in g)
            for g in groups), "label_groups", groups,
            "must be a list of lists of at least two label names")
        self._set("label_groups", tuple(tuple(g) for g in groups))
        if self.labels is not None:
            for group in self.label_groups:
                unknown = [x for x in group if x not in self.labels]
                _check(not unknown, "label_groups", list(group), f"{unknown} not in labels")
        _check(isinstance(self.model, Mapping), "model", self.model, "must be a mapping")
        self._set("model", dict(self.model))
        model = self.model_config(1)  # validates preset and overrides now, not after data prep
        _check(self.chorus_weight == 0 or model.chorus_logits, "chorus_weight", self.chorus_weight,
               "needs model.chorus_logits: true (the logits become chorus logits)")
        _check(self.section_weight == 0 or model.n_sections == len(SECTION_KINDS),
               "section_weight", self.section_weight,
               f"needs model.n_sections: {len(SECTION_KINDS)} ({', '.join(SECTION_KINDS)})")

    def _set(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)

    def model_config(self, n_labels: int) -> nets.ModelConfig:
        """The architecture: ``model.preset`` with the overrides, for ``n_labels`` outputs."""
        spec = dict(self.model)
        preset = spec.pop("preset", "huang")
        _check(preset in PRESETS, "model.preset", preset, f"expected one of {', '.join(PRESETS)}")
        _check("n_labels" not in spec, "model.n_labels", spec.get("n_labels"),
               "is set from the label list; remove it")
        fields = [f.name for f in dataclasses.fields(nets.ModelConfig) if f.name != "n_labels"]
        unknown = sorted(set(spec) - set(fields))
        _check(not unknown, "model", unknown, f"unknown key(s); known: preset, {', '.join(fields)}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        try:
            return dataclasses.replace(PRESETS[preset](n_labels), **overrides)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples become lists)."""
        return json.loads(json.dumps(to_dict(self)))


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: Path
    plot: Path
    best_epoch: int  # 1-based; 0 when no epoch ran
    metrics: dict[str, Any]
    epochs_run: int  # epochs completed in total, resumed ones included
    stopped_early: bool


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Load a :class:`TrainConfig` from YAML; non-None keyword overrides replace keys."""
    return load_yaml(TrainConfig, path, **overrides)


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class _Item:
    id: str
    features: Path  # cache entry of the song's log-mel frames
    n_frames: int
    target: np.ndarray  # (n_labels,) float32 multi-hot
    chorus: tuple[tuple[float, float], ...] = ()  # annotated spans (s); () when not annotated
    sections: tuple[tuple[str, float, float], ...] = ()  # (label, start_s, end_s) phrases
    chroma_features: Path | None = None  # cache entry of the chroma frames (structure models)
    render: str = ""  # the manifest the song comes from

    def frames(self) -> np.ndarray:
        """(n_frames, n_mels) float32 log-mel, memory-mapped (opened per use: no fd per song)."""
        return load_features(self.features)

    def chroma(self) -> np.ndarray | None:
        """(n_frames, 12) float32 chroma frames, or None without structure inputs."""
        return None if self.chroma_features is None else load_features(self.chroma_features)


@dataclass(frozen=True)
class _Data:
    labels: tuple[str, ...]
    train: list[_Item]
    val: list[_Item]
    mean: np.ndarray
    std: np.ndarray
    provenance: dict[str, Any]


def prepare_data(cfg: TrainConfig, *, min_frames: int, progress: bool = True,
                 stats: tuple[np.ndarray, np.ndarray] | None = None,
                 chroma: bool = False) -> _Data:
    """Read the manifest, cache features, compute training-split z-score statistics.

    Songs too short for one full training chunk (or one scoreable validation
    chunk) are left out and listed in the provenance.
    """
    songs = load_manifest(cfg.manifest)
    labels = cfg.labels or label_vocabulary(songs)
    render = {s.audio: cfg.manifest for s in songs}
    for extra in cfg.extra_manifests:
        more = load_manifest(extra)
        render.update({s.audio: extra for s in more})
        songs = songs + more
    if not labels:
        raise InputError(f"manifest {cfg.manifest}: no song has labels; nothing to train on")
    for group in cfg.label_groups:
        unknown = [x for x in group if x not in labels]
        _check(not unknown, "label_groups", list(group), f"{unknown} not in the labels {labels}")
    train_songs = [s for s in songs if s.split == cfg.train_split]
    val_songs = [s for s in songs if s.split == cfg.val_split]
    for split, chosen in ((cfg.train_split, train_songs), (cfg.val_split, val_songs)):
        if not chosen:
            raise InputError(f"manifest {cfg.manifest}: no song has split {split!r}")
    cached = build_feature_cache(train_songs + val_songs, cfg.mel, cfg.cache_dir,
                                 jobs=cfg.feature_jobs, progress=progress, chroma=chroma)

    def item(song: Song) -> _Item:
        chroma_path = cache_path(song.audio, cfg.mel, cfg.cache_dir, kind="chroma") \
            if chroma else None
        return _item(song, cached[song.audio], labels, chroma_path, render[song.audio])

    cf = ScorerConfig().chunk_frames
    min_val = min(cf, max(ScorerConfig().min_tail_frames, min_frames))
    train = [i for i in map(item, train_songs) if i.n_frames >= cf]
    val = [i for i in map(item, val_songs) if i.n_frames >= min_val]
    skipped = sorted({s.id for s in train_songs} - {i.id for i in train}) + \
        sorted({s.id for s in val_songs} - {i.id for i in val})
    if skipped:
        log.warning("%d song(s) too short to score, left out: %s", len(skipped),
                    ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    if not train or not val:
        raise InputError(f"manifest {cfg.manifest}: no song of split "
                         f"{cfg.train_split if not train else cfg.val_split!r} is long enough "
                         f"({cf} frames = {cf * cfg.mel.frame_seconds:.1f} s)")
    mean, std = stats if stats is not None else norm_stats(i.frames() for i in train)
    provenance = {
        "manifest": str(cfg.manifest),
        "extra_manifests": list(cfg.extra_manifests),
        "n_train_annotated": sum(1 for i in train if i.chorus),
        "n_val_annotated": sum(1 for i in val if i.chorus),
        "n_train": len(train),
        "n_val": len(val),
        "split_rule": f"manifest 'split' field: {cfg.train_split!r} trains, "
                      f"{cfg.val_split!r} validates (early stopping); other splits unused",
        "label_counts": {split: _label_counts(chosen, labels) for split, chosen in
                         ((cfg.train_split, train_songs), (cfg.val_split, val_songs))},
        "ignored_labels": dict(Counter(x for s in train_songs + val_songs for x in s.labels
                                       if x not in labels)),
        "skipped_short": skipped,
        "norm_stats": f"{cfg.train_split!r} split only, {sum(i.n_frames for i in train)} frames",
    }
    return _Data(tuple(labels), train, val, mean, std, provenance)


def _item(song: Song, features: Path, labels: Sequence[str], chroma: Path | None = None,
          render: str = "") -> _Item:
    target = np.array([x in song.labels for x in labels], np.float32)
    sections = tuple((str(lab), float(a), float(b)) for lab, a, b in song.extra.get("sections") or ())
    return _Item(song.id, features, len(load_features(features)), target, tuple(song.chorus),
                 sections, chroma, render)


def _label_counts(songs: Sequence[Song], labels: Sequence[str]) -> dict[str, int]:
    counts = Counter(x for s in songs for x in s.labels)
    return {x: counts[x] for x in labels}


def crop(n_frames: int, *, chunk_frames: int, max_chunks: int | None,
         rng: np.random.Generator, prefix: float = 0.0, prefix_min: int = 20) -> tuple[int, int]:
    """(first frame, number of full chunks) of a random training crop.

    With probability ``prefix`` the crop is instead a prefix: the song's first
    ``prefix_min`` to all of its chunks (still at a random offset below one chunk),
    as a provisional highlight sees a track. ``prefix`` = 0 draws nothing extra, so
    runs without it reproduce.
    """
    n_full = n_frames // chunk_frames
    take = min(n_full, max_chunks) if max_chunks else n_full
    if prefix > 0 and rng.random() < prefix and n_full > prefix_min:
        take = int(rng.integers(prefix_min, take + 1)) if take > prefix_min else take
        return int(rng.integers(0, min(chunk_frames, n_frames - take * chunk_frames + 1))), take
    start = int(rng.integers(0, n_frames - take * chunk_frames + 1))  # always drawn
    return start, take


def train_chunks(frames: np.ndarray, mean: np.ndarray, std: np.ndarray, *, chunk_frames: int,
                 max_chunks: int | None, rng: np.random.Generator) -> np.ndarray:
    """A random crop of at most ``max_chunks`` full chunks, z-scored.

    Returns
    -------
    np.ndarray, shape (n_chunks, n_mels, chunk_frames), float32
    """
    start, take = crop(len(frames), chunk_frames=chunk_frames, max_chunks=max_chunks, rng=rng)
    return _chunked(frames, mean, std, start, take, chunk_frames)


def _chunked(frames: np.ndarray, mean: np.ndarray, std: np.ndarray, start: int, take: int,
             chunk_frames: int, offset: float = 0.0) -> np.ndarray:
    span = take * chunk_frames
    x = (np.asarray(frames[start:start + span]) + offset - mean) / std
    return np.ascontiguousarray(x.reshape(take, chunk_frames, -1).transpose(0, 2, 1), np.float32)


def chunk_values(values: np.ndarray, start: int, lengths: Sequence[int]) -> np.ndarray:
    """Mean of ``values`` (n_frames, ...) over consecutive chunks of ``lengths`` frames from ``start``."""
    out, pos = [], start
    for n in lengths:
        out.append(np.asarray(values[pos:pos + n], np.float64).mean(axis=0))
        pos += n
    shape = (0,) + tuple(np.shape(values)[1:])
    return np.array(out, np.float32) if out else np.zeros(shape, np.float32)


def chorus_frames(n_frames: int, chorus: Sequence[tuple[float, float]], mel: MelConfig
                  ) -> np.ndarray:
    """Per frame, 1.0 when the frame's centre lies inside an annotated chorus span, else 0.0."""
    from models.evaluation.metrics import chorus_mask

    centres = (np.arange(n_frames) * mel.hop_length + mel.n_fft / 2) / mel.sample_rate
    return chorus_mask(centres, chorus).astype(np.float32)


@dataclass(frozen=True)
class _SongArrays:
    """One song as the network sees it: chunks, optional tail, chunk chroma and chorus targets."""

    full: np.ndarray  # (n, n_mels, chunk_frames)
    tail: np.ndarray | None  # (n_mels, t)
    chroma: np.ndarray | None  # (n [+ 1], n_fine + 12): slot chroma (fine models), chunk means
    target: np.ndarray | None  # (n [+ 1],) share of chorus frames; None: not annotated
    section: np.ndarray | None = None  # (n [+ 1],) int64 SECTION_KINDS index; None: no phrases


def song_arrays(item: _Item, data: _Data, *, start: int, take: int, tail: int = 0,
                offset: float = 0.0, mel: MelConfig | None = None,
                fine_slots: int = 0) -> _SongArrays:
    """``take`` full chunks from frame ``start`` (plus a ``tail``-frame partial chunk).

    ``fine_slots``: the model's chroma slots per chunk (its chunk vectors carry slot chroma).
    """
    mel = mel or MelConfig()
    cf = ScorerConfig().chunk_frames
    frames = item.frames()
    full = _chunked(frames, data.mean, data.std, start, take, cf, offset)
    tail_chunk = None
    if tail:
        t0 = start + take * cf
        tail_chunk = np.ascontiguousarray(
            ((np.asarray(frames[t0:t0 + tail]) + offset - data.mean) / data.std).T, np.float32)
    lengths = [cf] * take + ([tail] if tail else [])
    chroma = item.chroma()
    chunk_chroma = None
    if chroma is not None:  # the chroma part of the chunk vectors, as the scorer builds it
        end = start + take * cf
        parts = [chunk_chroma_values(chroma[start:end], cf, fine_slots)]
        if tail:
            parts.append(chunk_chroma_values(chroma[end:end + tail], cf, fine_slots,
                                             partial=True))
        chunk_chroma = np.concatenate(parts)
    target = chunk_values(chorus_frames(len(frames), item.chorus, mel), start, lengths) \
        if item.chorus else None
    section = None
    if item.sections:
        kinds = np.eye(len(SECTION_KINDS), dtype=np.float32)[section_frames(len(frames),
                                                                            item.sections, mel)]
        section = chunk_values(kinds, start, lengths).argmax(axis=1).astype(np.int64)
    return _SongArrays(full, tail_chunk, chunk_chroma, target, section)


def section_frames(n_frames: int, sections: Sequence[tuple[str, float, float]],
                   mel: MelConfig) -> np.ndarray:
    """Per frame, the :data:`SECTION_KINDS` index of the phrase holding its centre."""
    centres = (np.arange(n_frames) * mel.hop_length + mel.n_fft / 2) / mel.sample_rate
    out = np.zeros(n_frames, np.int64)
    for label, start, end in sections:
        kind = 1 if label == "A" else 2 if label == "B" else 3 if label.isupper() else 0
        out[(centres >= start) & (centres < end)] = kind
    return out


def whole_song(frames: np.ndarray, mean: np.ndarray, std: np.ndarray, *,
               min_tail: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A whole song as the scorer sees it: (full chunks (n, n_mels, cf), tail (n_mels, t) or None)."""
    scorer = ScorerConfig()
    x = ((np.asarray(frames) - mean) / std).astype(np.float32)
    chunks = whole_track_chunks(x, scorer, min_tail)
    tail = chunks.pop() if chunks and chunks[-1].shape[1] < scorer.chunk_frames else None
    full = np.stack(chunks) if chunks else np.zeros((0, x.shape[1], scorer.chunk_frames), np.float32)
    return full, tail


def whole_song_arrays(item: _Item, data: _Data, *, min_tail: int,
                      fine_slots: int = 0) -> _SongArrays:
    """:func:`song_arrays` of the whole song, cut exactly as the streaming scorer cuts it."""
    cf = ScorerConfig().chunk_frames
    n_full, rest = divmod(item.n_frames, cf)
    return song_arrays(item, data, start=0, take=n_full,
                       tail=rest if rest >= min(cf, min_tail) else 0, fine_slots=fine_slots)


def batch_forward(net: nets.AttentionNet, songs: Sequence[tuple[np.ndarray, np.ndarray | None]],
                  device: torch.device, chroma: Sequence[np.ndarray] | None = None, *,
                  hidden: bool = False) -> tuple[torch.Tensor, ...]:
    """Attention logits (B, C) and label probabilities y (B, n_labels) for a batch of songs.

    Equal to ``net(chunks, lengths)`` on the zero-padded batch, but only real
    chunks go through the CNN, and a partial final chunk is embedded at its
    own length as the streaming scorer does. ``chroma`` (one (C_i, n_chroma)
    array per song) is appended to the chunk vectors of a structure model.
    With ``hidden`` the Bi-LSTM outputs (B, C, 2h) come third.
    """
    full = [torch.from_numpy(f) for f, _ in songs]
    counts = [len(f) for f in full]
    emb = net.embed(torch.cat(full).to(device)) if sum(counts) else None
    parts = list(emb.split(counts)) if emb is not None else [None] * len(songs)
    seqs = []
    for i, (part, (_, tail)) in enumerate(zip(parts, songs)):
        pieces = [part] if part is not None and len(part) else []
        if tail is not None:
            pieces.append(net.embed(torch.from_numpy(tail[None]).to(device)))
        seq = torch.cat(pieces)
        if chroma is not None:
            seq = torch.cat([seq, torch.from_numpy(np.asarray(chroma[i], np.float32)).to(device)],
                            dim=1)
        seqs.append(seq)
    lengths = torch.tensor([len(s) for s in seqs])
    padded = pad_sequence(seqs, batch_first=True)
    return net.attend_all(padded, lengths) if hidden else net.attend(padded, lengths)


def forward_arrays(net: nets.AttentionNet, songs: Sequence[_SongArrays], device: torch.device,
                   *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
    """:func:`batch_forward` on :class:`_SongArrays`."""
    chroma = [s.chroma for s in songs] if net.config.n_chroma else None
    return batch_forward(net, [(s.full, s.tail) for s in songs], device, chroma, hidden=hidden)


def section_loss(net: nets.AttentionNet, hidden: torch.Tensor, songs: Sequence[_SongArrays]
                 ) -> torch.Tensor:
    """Cross-entropy of the section head(s) over the chunks of songs with phrase labels
    (summed over the heads of a model with ``phrase_links``)."""
    rows = [i for i, s in enumerate(songs) if s.section is not None and len(s.section)]
    if not rows:
        return hidden.new_zeros(())
    t = torch.cat([torch.from_numpy(songs[i].section) for i in rows]).to(hidden.device)
    loss = hidden.new_zeros(())
    for logits in net.section_heads(hidden):  # one head, or one per Bi-LSTM (phrase_links)
        z = torch.cat([logits[i, : len(songs[i].section)] for i in rows])
        loss = loss + F.cross_entropy(z, t)
    return loss


def chorus_loss(logits: torch.Tensor, songs: Sequence[_SongArrays], *,
                later_weight: float = 1.0) -> torch.Tensor:
    """Mean BCE of the chorus logits against the per-chunk chorus shares, annotated songs only.

    ``later_weight`` weighs the chunks of later melodic material (C, D, ...:
    section kind ``later``) as hard negatives: the chorus is POP909's second
    material (B), and the material after it is what the window confuses it
    with (docs/evaluation.md). Weights are normalised to mean 1 over the
    chunks, so the loss keeps its scale.
    """
    rows = [i for i, s in enumerate(songs) if s.target is not None and len(s.target)]
    if not rows:
        return logits.new_zeros(())
    u = torch.cat([logits[i, : len(songs[i].target)] for i in rows])
    t = torch.cat([torch.from_numpy(songs[i].target) for i in rows]).to(u.device)
    if later_weight == 1.0:
        return F.binary_cross_entropy_with_logits(u, t)
    later = SECTION_KINDS.index("later")
    w = torch.cat([torch.from_numpy(np.where(songs[i].section == later, later_weight, 1.0)
                                    if songs[i].section is not None
                                    else np.ones(len(songs[i].target)))
                   for i in rows]).to(u.device, u.dtype)
    return F.binary_cross_entropy_with_logits(u, t, weight=w / w.mean())


def bce(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities ``y`` against multi-hot ``target``."""
    return F.binary_cross_entropy(y.clamp(PROB_EPS, 1 - PROB_EPS), target)


# ----------------------------------------------------------------------------- metrics
def evaluate(net: nets.AttentionNet, items: Sequence[_Item], data: _Data, labels: Sequence[str],
             groups: Sequence[Sequence[str]], *, batch_size: int, device: torch.device,
             progress: bool = False) -> dict[str, Any]:
    """Whole-song validation: loss, mean ROC AUC over labels, recall@1 per label group.

    For a chorus model (``chorus_logits``) also ``val_chorus``: the mean
    c50, precision and chorusness-curve AUC over the annotated validation
    songs (:func:`chorus_metrics`), overall and per render (manifest).
    """
    from sklearn.metrics import roc_auc_score

    net.eval()
    min_tail = max(ScorerConfig().min_tail_frames, net.min_frames)
    order = sorted(range(len(items)), key=lambda i: items[i].n_frames)  # less padding
    probs = np.zeros((len(items), len(labels)), np.float32)
    chorus_rows: list[tuple[str, dict]] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="val", unit="batch",
                          leave=False, disable=not progress):
            idx = order[start:start + batch_size]
            songs = [whole_song_arrays(items[i], data, min_tail=min_tail,
                                       fine_slots=net.config.fine_slots) for i in idx]
            u, y = forward_arrays(net, songs, device)
            probs[idx] = y.cpu().numpy()
            if net.config.chorus_logits:
                for j, i in enumerate(idx):
                    if items[i].chorus:
                        n = len(songs[j].full) + (songs[j].tail is not None)
                        chorus_rows.append((items[i].render, chorus_metrics(
                            u[j, :n].cpu().numpy(), songs[j], items[i])))
    targets = np.stack([i.target for i in items])
    loss = float(bce(torch.from_numpy(probs), torch.from_numpy(targets)))
    per_label = {}
    for j, name in enumerate(labels):
        if 0 < targets[:, j].sum() < len(targets):  # both classes present
            per_label[name] = float(roc_auc_score(targets[:, j], probs[:, j]))
    auc = float(np.mean(list(per_label.values()))) if per_label else float("nan")
    out = {"val_loss": loss, "val_auc": auc, "val_auc_per_label": per_label,
           "val_recall": group_recall(probs, targets, labels, groups)}
    if chorus_rows:
        out["val_chorus"] = _mean_metrics([m for _, m in chorus_rows])
        out["val_chorus_per_render"] = {
            r: _mean_metrics([m for rr, m in chorus_rows if rr == r])
            for r in sorted({r for r, _ in chorus_rows})}
    return out


def chorus_metrics(logits: np.ndarray, song: _SongArrays, item: _Item, *,
                   length_s: float = 30.0, mel: MelConfig | None = None) -> dict[str, Any]:
    """c50, precision and curve AUC of the pure chorusness window of one song.

    The window is :func:`models.window.select` with gamma = beta = 1 over
    ``sigmoid(logits)`` spread on the scorer's slots, as ``hookstream
    detect`` does for a chorus model before any energy fusion.
    """
    from models.config import WindowConfig
    from models.evaluation.metrics import coverage, curve_auc
    from models.window import select, slot_attention

    mel = mel or MelConfig()
    sc = ScorerConfig()
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    lengths = [sc.chunk_frames] * len(song.full) + ([song.tail.shape[1]] if song.tail is not None
                                                    else [])
    n_slots = -(-item.n_frames // sc.slot_frames)
    att = slot_attention(p, np.array(lengths), sc.slot_frames, n_slots, sc.chunk_frames)
    slot_s = sc.slot_frames * mel.frame_seconds
    duration = (item.n_frames * mel.hop_length + mel.n_fft - mel.hop_length) / mel.sample_rate
    h = select(att, np.zeros(n_slots), slot_s=slot_s, duration_s=duration,
               cfg=WindowConfig(length_s=length_s, gamma=1.0, beta=1.0))
    out = coverage((h.start_s, h.end_s), item.chorus)
    out["auc"] = curve_auc((np.arange(n_slots) + 0.5) * slot_s, att, item.chorus)
    return out


def _mean_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"songs": float(len(rows))}
    for key in ("c50", "precision", "c100", "auc"):
        got = [float(r[key]) for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(got)) if got else None
    return out


def group_recall(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str],
                 groups: Sequence[Sequence[str]]) -> dict[str, float]:
    """Recall@1 (accuracy) of each single-choice group, over songs with exactly one of its labels.

    Keys are the group's labels joined by ``/`` (``"major/minor"``); NaN when
    no song qualifies.
    """
    out = {}
    for group in groups:
        cols = [labels.index(x) for x in group]
        t = targets[:, cols]
        ok = t.sum(axis=1) == 1
        hits = t[ok].argmax(axis=1) == probs[ok][:, cols].argmax(axis=1)
        out["/".join(group)] = float(hits.mean()) if ok.any() else float("nan")
    return out


def _score(metrics: Mapping[str, Any], select_on: str = "auc") -> float:
    """Early-stopping criterion: val AUC (minus the val loss when no label has both
    classes), or with ``select_on="chorus"`` the mean of val c50 and precision."""
    if select_on == "chorus" and "val_chorus" in metrics:
        c = metrics["val_chorus"]
        return (c["c50"] + c["precision"]) / 2.0
    auc = metrics["val_auc"]
    return auc if math.isfinite(auc) else -metrics["val_loss"]


# ----------------------------------------------------------------------------- training
def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_epoch(net: nets.AttentionNet, opt: torch.optim.Optimizer, data: _Data, cfg: TrainConfig,
                *, epoch: int, step: int, device: torch.device,
                progress: bool = True) -> tuple[float, int]:
    """One pass over the training songs; returns (mean loss per song, global step after)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(int(rng.integers(2**62)))  # dropout masks
    order = rng.permutation(len(data.train))
    cf = ScorerConfig().chunk_frames
    net.train()
    total, seen = 0.0, 0
    batches = range(0, len(order), cfg.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    for start in bar:
        items = [data.train[i] for i in order[start:start + cfg.batch_size]]
        songs = []
        for it in items:
            first, take = crop(it.n_frames, chunk_frames=cf, max_chunks=cfg.max_chunks, rng=rng,
                               prefix=cfg.prefix_crop, prefix_min=cfg.prefix_min_chunks)
            gain = float(rng.uniform(-cfg.gain_db, cfg.gain_db)) if cfg.gain_db else 0.0
            songs.append(song_arrays(it, data, start=first, take=take, mel=cfg.mel,
                                     offset=gain * math.log(10.0) / 10.0,  # dB -> log power
                                     fine_slots=net.config.fine_slots))
        target = torch.from_numpy(np.stack([i.target for i in items])).to(device)
        for group in opt.param_groups:
            group["lr"] = cfg.lr / (1.0 + cfg.lr_decay * step)
        u, y, hidden = forward_arrays(net, songs, device, hidden=True)
        loss = bce(y, target)
        if cfg.chorus_weight:
            loss = loss + cfg.chorus_weight * chorus_loss(u, songs,
                                                          later_weight=cfg.later_weight)
        if cfg.section_weight:
            loss = loss + cfg.section_weight * section_loss(net, hidden, songs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        total += loss.item() * len(items)
        seen += len(items)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1), step


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          command: str | None = None) -> TrainResult:
    """Train, validate every epoch, stop early, write the checkpoint, history and plot.

    Parameters
    ----------
    cfg : the run
    resume : continue from ``<out>.resume/`` when it exists (else start afresh)
    progress : show tqdm bars (feature caching, epochs, batches)
    command : recorded in the provenance; default: this process's command line
    """
    out = Path(cfg.out)
    state_file = resume_path(out)
    saved = _read_resume(state_file, cfg) if resume else None
    if resume and saved is None:
        log.info("no resume state at %s; starting from scratch", state_file)
    threads_before = torch.get_num_threads()
    det_before = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        return _run(cfg, saved, progress=progress, command=command)
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(det_before[0], warn_only=det_before[1])


def _run(cfg: TrainConfig, saved: dict | None, *, progress: bool, command: str | None) -> TrainResult:
    from models.detect import resolve_device

    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    started = time.monotonic()
    probe = nets.build(cfg.model_config(1))
    source = cfg.init_checkpoint or cfg.cnn_from
    init = _init_checkpoint(cfg, source) if source and saved is None else None
    stats = (saved["norm.mean"], saved["norm.std"]) if saved is not None else \
        (init.norm_mean, init.norm_std) if init is not None else None
    data = prepare_data(cfg, min_frames=probe.min_frames, progress=progress, stats=stats,
                        chroma=probe.config.n_chroma > 0)
    if saved is not None and tuple(saved["doc"]["labels"]) != data.labels:
        raise ConfigError(f"resume: saved labels {saved['doc']['labels']} differ from "
                          f"{list(data.labels)}")
    model_cfg = cfg.model_config(len(data.labels))
    torch.manual_seed(cfg.seed)
    net = nets.build(model_cfg).to(device)
    if init is not None and cfg.cnn_from:
        _copy_cnn(net, init, cfg.cnn_from)
    if cfg.freeze_cnn:
        for p in net.conv.parameters():
            p.requires_grad_(False)
    opt = make_optimizer(cfg, [p for p in net.parameters() if p.requires_grad])
    history: list[dict[str, Any]] = []
    epoch, step, best_epoch, best_score, bad = 0, 0, 0, -math.inf, 0
    if init is not None and cfg.init_checkpoint:
        if init.model != model_cfg or tuple(init.labels) != data.labels:
            raise ConfigError(f"init_checkpoint {cfg.init_checkpoint}: its model or labels "
                              f"differ from this config's ({init.model} {list(init.labels)} vs "
                              f"{model_cfg} {list(data.labels)})")
        net.load_state_dict(init.state_dict)
        log.info("initialised from %s (%s)", cfg.init_checkpoint, init.name)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if saved is not None:
        doc = saved["doc"]
        net.load_state_dict(saved["model"])
        best_state = saved["best"]
        _load_optimizer(opt, saved["optim"], doc["optimizer"])
        epoch, step, history = doc["epoch"], doc["step"], doc["history"]
        best_epoch, best_score, bad = doc["best_epoch"], doc["best_score"], doc["bad_epochs"]
        log.info("resumed %s after epoch %d (best epoch %d)", resume_path(out), epoch, best_epoch)
    log.info("training %s (%s, %d parameters) on %d songs, validating on %d, device %s",
             cfg.name, model_cfg.arch, sum(p.numel() for p in net.parameters()),
             len(data.train), len(data.val), device)
    stopped = bad >= cfg.patience
    with logging_redirect_tqdm():
        bar = tqdm(range(epoch + 1, cfg.epochs + 1), desc="train", unit="epoch",
                   initial=epoch, total=cfg.epochs, disable=not progress or stopped)
        for epoch in bar:
            if stopped:
                break
            t0 = time.monotonic()
            loss, step = train_epoch(net, opt, data, cfg, epoch=epoch, step=step, device=device,
                                     progress=progress)
            metrics = evaluate(net, data.val, data, data.labels, cfg.label_groups,
                               batch_size=cfg.batch_size, device=device, progress=progress)
            score = _score(metrics, cfg.select_on)
            improved = score > best_score
            if improved:
                best_epoch, best_score, bad = epoch, score, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
            entry = {"epoch": epoch, "train_loss": loss, **metrics,
                     "lr": opt.param_groups[0]["lr"], "seconds": time.monotonic() - t0,
                     "best": improved}
            history.append(entry)
            log.info(_epoch_line(entry, cfg.epochs))
            bar.set_postfix(loss=f"{loss:.4f}", auc=f"{metrics['val_auc']:.3f}")
            _write_resume(resume_path(out), cfg, net, best_state, opt, data, history=history,
                          epoch=epoch, step=step, best_epoch=best_epoch, best_score=best_score,
                          bad=bad)
            _write_json(history_path(out), history)
            stopped = bad >= cfg.patience
            if stopped:
                log.info("early stop: no val improvement in %d epochs; best epoch %d",
                         cfg.patience, best_epoch)
                break
        bar.close()
    return _finish(cfg, data, model_cfg, best_state, history, best_epoch, stopped,
                   command=command, device=device, seconds=time.monotonic() - started)


def _init_checkpoint(cfg: TrainConfig, path: str) -> ckpts.Checkpoint:
    """The checkpoint a run starts from (``init_checkpoint`` or ``cnn_from``); its mel settings
    must be this run's."""
    init = ckpts.load(path)
    if init.mel != cfg.mel:
        key = "init_checkpoint" if cfg.init_checkpoint else "cnn_from"
        raise ConfigError(f"{key} {path}: mel settings {init.mel} differ from this config's "
                          f"{cfg.mel}")
    return init


def _copy_cnn(net: nets.AttentionNet, source: ckpts.Checkpoint, path: str) -> None:
    """Load ``source``'s CNN weights (``conv.*``) into ``net``; refused when the shapes differ."""
    own = {k: v for k, v in net.state_dict().items() if k.startswith("conv.")}
    theirs = {k: v for k, v in source.state_dict.items() if k.startswith("conv.")}
    if set(own) != set(theirs) or any(own[k].shape != theirs[k].shape for k in own):
        raise ConfigError(f"cnn_from {path}: its CNN ({source.model.arch}, conv_channels "
                          f"{source.model.conv_channels}) does not fit this config's "
                          f"({net.config.arch}, conv_channels {net.config.conv_channels})")
    net.load_state_dict(theirs, strict=False)
    log.info("CNN weights and z-score statistics from %s (%s)", path, source.name)


def _finish(cfg: TrainConfig, data: _Data, model_cfg: nets.ModelConfig,
            best_state: dict[str, torch.Tensor], history: list[dict], best_epoch: int,
            stopped: bool, *, command: str | None, device: torch.device,
            seconds: float) -> TrainResult:
    out = Path(cfg.out)
    best = next((h for h in history if h["epoch"] == best_epoch), None)
    metrics: dict[str, Any] = {"best_epoch": best_epoch, "epochs_run": len(history),
                               "stopped_early": stopped}
    if best is not None:
        metrics.update({k: best[k] for k in ("val_auc", "val_auc_per_label", "val_recall",
                                             "val_loss", "train_loss", "val_chorus",
                                             "val_chorus_per_render") if k in best})
    provenance = {
        "trained": bool(history),
        "data": data.provenance,
        "command": command if command is not None else shlex.join(sys.argv),
        "config": cfg.as_dict(),
        "metrics": _json_safe(metrics),
        "created_at": ckpts.now_iso(),
        "torch": torch.__version__,
        "device": str(device),
        "train_seconds": round(seconds, 1),
    }
    provenance["model_card"] = card.make_card(
        name=cfg.name, model=dataclasses.asdict(model_cfg), labels=list(data.labels),
        data=data.provenance, metrics=provenance["metrics"], config=provenance["config"])
    ckpt = ckpts.Checkpoint(name=cfg.name, model=model_cfg, mel=cfg.mel, labels=data.labels,
                            norm_mean=data.mean, norm_std=data.std,
                            state_dict={k: v.cpu() for k, v in best_state.items()},
                            provenance=provenance)
    path = ckpts.save(ckpt, out)
    card_path(out).write_text(card.render(provenance["model_card"]))
    _write_json(history_path(out), history)
    plot = plot_history(history, history_plot_path(out), title=cfg.name)
    return TrainResult(checkpoint=path, history=history_path(out), plot=plot,
                       best_epoch=best_epoch, metrics=metrics, epochs_run=len(history),
                       stopped_early=stopped)


def _epoch_line(h: Mapping[str, Any], epochs: int) -> str:
    recall = " ".join(f"{k} {v:.3f}" for k, v in h["val_recall"].items())
    if "val_chorus" in h:
        c = h["val_chorus"]
        recall += f" chorus c50 {c['c50']:.3f} precision {c['precision']:.3f} auc {c['auc']:.3f}"
    return (f"epoch {h['epoch']}/{epochs}: loss {h['train_loss']:.4f} val_loss {h['val_loss']:.4f} "
            f"val_auc {h['val_auc']:.4f}{' ' + recall if recall else ''} lr {h['lr']:.2g} "
            f"({h['seconds']:.1f} s){' *best' if h['best'] else ''}")


# ----------------------------------------------------------------------------- files
def resume_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".resume") / "state.safetensors"


def card_path(out: str | Path) -> Path:
    """The Markdown model card written beside a checkpoint."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + ".card.md")


def history_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".history.json")


def history_plot_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".history.png")


def _write_resume(path: Path, cfg: TrainConfig, net: nets.AttentionNet,
                  best_state: Mapping[str, torch.Tensor], opt: torch.optim.Optimizer, data: _Data,
                  *, history: list, epoch: int, step: int, best_epoch: int, best_score: float,
                  bad: int) -> None:
    """Everything needed to continue bit-for-bit, as one safetensors file (no pickle)."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt_tensors, opt_doc = _flatten_optimizer(opt)
    tensors.update(opt_tensors)
    tensors["norm.mean"] = torch.from_numpy(np.asarray(data.mean, np.float32))
    tensors["norm.std"] = torch.from_numpy(np.asarray(data.std, np.float32))
    doc = {"version": RESUME_VERSION, "epoch": epoch, "step": step, "best_epoch": best_epoch,
           "best_score": best_score, "bad_epochs": bad, "history": history,
           "labels": list(data.labels), "config": cfg.as_dict(), "optimizer": opt_doc}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"hookstream_resume": json.dumps(_json_safe(doc))})
    tmp.replace(path)


def _read_resume(path: Path, cfg: TrainConfig) -> dict | None:
    """The saved training state, or None when there is none; errors if it is another run's."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {})["hookstream_resume"])
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable state is reported the same way
        raise InputError(f"resume state {path}: unreadable ({exc}); delete it to start afresh") \
            from None
    if doc.get("version") != RESUME_VERSION:
        raise InputError(f"resume state {path}: version {doc.get('version')!r}, this hookstream "
                         f"reads {RESUME_VERSION}")
    now, then = cfg.as_dict(), doc["config"]
    changed = sorted(k for k in set(now) | set(then)
                     if k not in RESUMABLE_CHANGES and now.get(k) != then.get(k))
    if changed:
        raise ConfigError(f"resume state {path} was written with a different config "
                          f"({', '.join(changed)} changed); delete it or restore those keys")
    doc["best_score"] = -math.inf if doc["best_score"] is None else float(doc["best_score"])
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "optim": {}}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        if head in parts:
            parts[head][rest] = value
    return {"doc": doc, **parts, "norm.mean": tensors["norm.mean"].numpy(),
            "norm.std": tensors["norm.std"].numpy()}


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as ``optim.<param>.<name>`` tensors plus JSON (hyperparameters, scalars)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                    doc: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = value
    for idx, values in doc["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = [dict(g, **({"betas": tuple(g["betas"])} if "betas" in g else {}))
              for g in doc["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=1) + "\n")
    tmp.replace(path)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def plot_history(history: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> Path:
    """Training loss, validation loss, AUC and group recall per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key, sub=None):
        vals = [h[key] if sub is None else (h[key] or {}).get(sub) for h in history]
        return [math.nan if v is None else v for v in vals]

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, series("train_loss"), marker="o", label="train loss")
    ax_loss.plot(epochs, series("val_loss"), marker="o", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("binary cross-entropy")
    ax_loss.legend()
    ax_val.plot(epochs, series("val_auc"), marker="o", label="val mean ROC AUC")
    if history and "val_chorus" in history[0]:
        for key, style in (("c50", "-"), ("precision", "-"), ("auc", ":")):
            ax_val.plot(epochs, series("val_chorus", key), marker="s", linestyle=style,
                        label=f"val chorus {key}")
    groups = list(history[0]["val_recall"]) if history else []
    for g in groups:
        ax_val.plot(epochs, series("val_recall", g), marker=".", linestyle="--",
                    label=f"val recall@1 {g}")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax_val.axvline(best[-1], color="grey", linewidth=0.8, label=f"best epoch {best[-1]}")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylim(0, 1)
    ax_val.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- validation helpers
def _check(ok: bool, key: str, value: Any, reason: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r}: {reason}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(key: str, value: Any) -> float:
    """A float from an int, float or numeric string (YAML reads ``1e-3`` as a string)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r}: must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r}: must be a number") from None
