"""Per-track scorer state and the batched scorer that streams the attention models.

A track's :class:`TrackState` is a plain value (numpy arrays and counters,
versioned, serialisable with :meth:`TrackState.to_bytes`). :meth:`Scorer.step`
takes many ``(state, new samples)`` pairs, runs every complete 3 s chunk of
every track through the CNN in one forward pass, and returns the new states;
:meth:`Scorer.finalize` ends tracks and returns their final scores.

Provisional attention
---------------------
The backward half of the Bi-LSTM (and CRAN's track summary) needs the future,
which a stream does not have yet. After each step, the attention logits of a
track's last ``context_chunks`` chunks (K, default 80 = 4 minutes) are
recomputed by running the recurrent attention over those K chunk vectors as if
the track ended now; the logits of older chunks keep the value they had when
they last were inside that context. The provisional attention is the softmax
over all logits so far. So:

- cost per new chunk: one CNN pass over the chunk, plus one recurrent pass
  over at most K chunk vectors (O(K), independent of the track's length);
  the total per track is O(n K) recurrent steps for n chunks instead of the
  O(n^2) of recomputing the whole track each time; the softmax and window
  over n chunk values per update are O(n) vector operations (n <= 400 at the
  20 minute limit), negligible next to the networks;
- provisional logits differ from the final ones because the backward pass
  starts at the current end rather than the track's end, and (for tracks
  longer than K chunks) the forward pass starts K chunks back.

Lazy refresh: ``step(..., refresh=flags)`` skips the recurrent pass for
tracks whose provisional result nobody will read yet (the worker passes the
tracks due for a provisional event under ``stream.provisional_min_interval_s``).
A skipped track's logits stay behind its chunk vectors; its next refreshed
step runs, in the same batched call, the context ending at its last chunk and
one context for each chunk that left the context meanwhile, so its logits are
those (to float rounding: they run in one batch) a scorer refreshing after every step would have when each step
adds at most one chunk (pieces shorter than a 3 s chunk, as live uploads
send); the cost per chunk stays one K-chunk context at most, and the final
result does not depend on the refreshes at all.

Why the forward LSTM state is not carried: the shipped chorus model's
Bi-LSTM inputs include ``track_norm`` (the track's mean embedding subtracted)
and repetition features over the whole context, so every forward input
changes as the track grows and a carried forward state would not be exact.

Provisional contexts may go to another recurrent half than the final pass:
``Scorer(..., provisional=ckpt)`` with a checkpoint that makes the same chunk
vectors (:func:`models.checkpoint.chunk_vector_mismatch`), such as the default
model's provisional head, trained on tracks cut short. The state and the
final result do not change with it.

At :meth:`Scorer.finalize` the recurrent attention runs once over all of the
track's chunk vectors, which is exactly the whole-track forward pass of the
model (``AttentionNet.forward``): final attention equals offline attention.

A final partial chunk of at least ``min_tail_frames`` frames (~1 s) is
embedded on its own at finalize; shorter tails are not scored (their time
still counts in the track's duration and energy curve).

Models with structure inputs (``ModelConfig.n_chroma > 0``) also get each
chunk's mean chroma, appended to its chunk vector (:mod:`models.nets`), and
with ``fine_slots`` before it the chunk's chroma per slot
(:func:`chunk_chroma_values`), from which the model finds repeated phrases at
slot resolution (``models.nets.phrase_similarity``); the
repetition features derived from them cover the provisional context while
streaming (so a repeat is seen once both occurrences lie within the last
``context_chunks`` chunks) and the whole track at finalize (exact). For a
model whose attention logits are chorus logits (``chorus_logits``),
:class:`TrackScores` carries ``chorusness = sigmoid(logits)``, which the
highlight window reads instead of the attention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from models import mel
from models.audio import validate_samples
from models.checkpoint import Checkpoint, chunk_vector_mismatch
from models.config import ScorerConfig
from models.errors import ConfigError, InputError
from models.resample import ResampleState, resampler

# 2: pending_chroma, chunk chroma in the chunk vectors; 3: source rate, resampler;
# 4: slot chroma in the chunk vectors of models with fine_slots (another width)
STATE_VERSION = 4
_EMBED_BATCH = 512  # chunks per CNN forward pass (bounds peak memory)

_f32 = np.float32


@dataclass(frozen=True)
class TrackState:
    """Everything the scorer remembers about one track between steps."""

    track_id: str
    n_samples: int = 0  # samples received
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, _f32))  # unframed samples
    pending: np.ndarray | None = None  # (k, n_mels) normalised frames not yet in a chunk
    pending_energy: np.ndarray = field(default_factory=lambda: np.zeros(0, _f32))  # (k,)
    pending_chroma: np.ndarray | None = None  # (k, n_chroma) chroma frames, structure models only
    embeddings: np.ndarray | None = None  # (C, E [+ n_fine + n_chroma]) chunk vectors
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, _f32))  # (C,)
    slot_energy: np.ndarray = field(default_factory=lambda: np.zeros(0, _f32))  # complete chunks' slots
    sample_rate: int = 0  # the track's source rate (Hz), fixed per track; 0: the model's rate
    resampler: ResampleState = field(default_factory=ResampleState)  # source -> model rate carry
    version: int = STATE_VERSION

    # The arrays that grow with the track, along axis 0 (a row per chunk, or per slot). A row,
    # once there, never changes, except the last ``context_chunks`` logits, which every step's
    # provisional refresh rewrites. Every other field is bounded (tail, pending frames,
    # counters, carries) and needs no mention anywhere to be stored with the track's head.
    GROWING: ClassVar[tuple[str, ...]] = ("embeddings", "slot_energy", "logits")

    @property
    def n_chunks(self) -> int:
        return len(self.logits)

    def rows(self) -> dict[str, int]:
        """Rows of each growing array."""
        return {name: _rows(getattr(self, name)) for name in self.GROWING}

    def drop_rows(self, rows: Mapping[str, int]) -> "TrackState":
        """This state without the first ``rows[name]`` rows of each growing array."""
        return replace(self, **{name: getattr(self, name)[rows[name]:] for name in self.GROWING
                                if rows.get(name) and getattr(self, name) is not None})

    def join_rows(self, prefix: Mapping[str, np.ndarray]) -> "TrackState":
        """``prefix[name]`` rows, then this state's rows, of each growing array (undoes
        :meth:`drop_rows`; a concatenation, so every value is bitwise the same)."""
        return replace(self, **{name: np.concatenate([prefix[name], getattr(self, name)])
                                for name in self.GROWING if name in prefix and len(prefix[name])})

    @property
    def received_samples(self) -> int:
        """Samples received, at the source rate (``n_samples`` counts them at the model's rate)."""
        return self.resampler.n_in

    def to_bytes(self) -> bytes:
        """Serialise (safetensors container; no pickle)."""
        arrays = {"tail": self.tail, "pending_energy": self.pending_energy,
                  "logits": self.logits, "slot_energy": self.slot_energy,
                  "resample_carry": self.resampler.carry}
        if self.pending is not None:
            arrays["pending"] = self.pending
        if self.pending_chroma is not None:
            arrays["pending_chroma"] = self.pending_chroma
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings
        meta = {"version": str(self.version), "track_id": self.track_id,
                "n_samples": str(self.n_samples), "sample_rate": str(self.sample_rate),
                "resample_in": str(self.resampler.n_in), "resample_out": str(self.resampler.n_out)}
        return st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrackState":
        try:
            arrays = st_load(data)
            meta = _metadata(data)
            version = int(meta["version"])
        except Exception as exc:
            raise InputError(f"track state: not a serialised TrackState ({exc})") from None
        if version != STATE_VERSION:
            raise InputError(f"track state of {meta.get('track_id')!r}: version {version}, "
                             f"this hookstream reads version {STATE_VERSION} (finish or drop the "
                             "tracks open under the older version)")
        resampler = ResampleState(arrays["resample_carry"], int(meta["resample_in"]),
                                  int(meta["resample_out"]))
        return cls(track_id=meta["track_id"], n_samples=int(meta["n_samples"]),
                   tail=arrays["tail"], pending=arrays.get("pending"),
                   pending_energy=arrays["pending_energy"],
                   pending_chroma=arrays.get("pending_chroma"), embeddings=arrays.get("embeddings"),
                   logits=arrays["logits"], slot_energy=arrays["slot_energy"],
                   sample_rate=int(meta["sample_rate"]), resampler=resampler, version=version)


def _rows(a: np.ndarray | None) -> int:
    return 0 if a is None else len(a)


def _metadata(data: bytes) -> dict:
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + header_len])["__metadata__"]


@dataclass(frozen=True)
class TrackScores:
    """A track's attention and energy, provisional or final: what the window reads.

    ``attention[c]`` is chunk c's share of the track's attention (sums to 1);
    ``chunk_lengths[c]`` its length in frames (all ``chunk_frames`` but a
    final partial one); ``slot_energy[s]`` the mean log-mel energy of slot s,
    covering every frame of the track seen so far.
    """

    track_id: str
    duration_s: float
    attention: np.ndarray
    chunk_lengths: np.ndarray
    slot_energy: np.ndarray
    final: bool
    labels: dict[str, float] | None = None
    chorusness: np.ndarray | None = None  # (C,) sigmoid of chorus logits, chorus models only
    chroma: np.ndarray | None = None  # (C, n_chroma) chunk chroma, structure models only
    slot_chroma: np.ndarray | None = None  # (C, fine_slots * n_chroma), models with fine_slots


class Scorer:
    """Batched, stateless-between-calls scorer around one checkpoint (and, optionally, the
    checkpoint that scores provisional contexts: ``provisional``, same chunk vectors)."""

    def __init__(self, ckpt: Checkpoint, cfg: ScorerConfig | None = None, *,
                 device: str | torch.device = "cpu", provisional: Checkpoint | None = None):
        self.ckpt = ckpt
        self.cfg = cfg or ScorerConfig()
        self.mel_cfg = ckpt.mel
        self.device = torch.device(device)
        self.net = ckpt.build().to(self.device)
        self.provisional_ckpt = provisional or ckpt
        if provisional is not None:
            why = chunk_vector_mismatch(ckpt, provisional)
            if why:
                raise ConfigError(f"provisional model {provisional.name}: {why} than the final "
                                  f"model {ckpt.name}; it must read the same chunk vectors")
        self.provisional_net = self.net if provisional is None else \
            provisional.build().to(self.device)
        self.mean = np.asarray(ckpt.norm_mean, _f32)
        self.std = np.asarray(ckpt.norm_std, _f32)
        self.min_tail = max(self.cfg.min_tail_frames, self.net.min_frames)
        self.n_chroma = ckpt.model.n_chroma
        self.fine_slots = ckpt.model.fine_slots
        if self.fine_slots and self.cfg.chunk_frames % self.fine_slots:
            raise InputError(f"scorer.chunk_frames = {self.cfg.chunk_frames}: the model's "
                             f"{self.fine_slots} chroma slots per chunk must divide it")
        with torch.inference_mode():
            probe = torch.zeros(1, self.mel_cfg.n_mels, self.cfg.chunk_frames, device=self.device)
            self._cnn_dim = int(self.net.embed(probe).shape[1])
        if self.cfg.chunk_frames < self.net.min_frames:
            raise InputError(f"scorer.chunk_frames = {self.cfg.chunk_frames}: the model needs "
                             f"at least {self.net.min_frames} frames per chunk")

    @property
    def model_name(self) -> str:
        return self.ckpt.name

    @property
    def provisional_model_name(self) -> str:
        return self.provisional_ckpt.name

    @property
    def slot_seconds(self) -> float:
        return self.cfg.slot_frames * self.mel_cfg.frame_seconds

    def init_state(self, track_id: str, *, sample_rate: int | None = None) -> TrackState:
        """A new track whose samples arrive at ``sample_rate`` Hz (default: the model's rate)."""
        rate = self.mel_cfg.sample_rate if sample_rate is None else sample_rate
        return TrackState(track_id=track_id, sample_rate=rate,
                          resampler=self._resampler(rate).init_state(),
                          pending=np.zeros((0, self.mel_cfg.n_mels), _f32),
                          pending_chroma=np.zeros((0, self.n_chroma), _f32) if self.n_chroma else None,
                          embeddings=np.zeros((0, self._embedding_dim()), _f32))

    # ------------------------------------------------------------------ step
    def _resampler(self, rate: int):
        return resampler(rate or self.mel_cfg.sample_rate, self.mel_cfg.sample_rate)

    @torch.inference_mode()
    def step(self, items: Sequence[tuple[TrackState, np.ndarray]], *,
             refresh: Sequence[bool] | None = None) -> list[TrackState]:
        """Feed new samples (mono float32 at each track's ``sample_rate``) to many tracks at once.

        Samples at another rate than the model's go through the track's
        streaming resampler (:mod:`models.resample`) first. ``refresh[i]``
        False: track i only gets its new chunk vectors; its provisional logits
        are brought up to date at its next refreshed step (see "Lazy refresh"
        in the module docstring). None: refresh every track.
        """
        if refresh is not None and len(refresh) != len(items):
            raise InputError(f"scorer.step: {len(refresh)} refresh flags for {len(items)} tracks")
        ids = [s.track_id for s, _ in items]
        if len(set(ids)) != len(ids):
            raise InputError("scorer.step: a track appears twice in one batch; join its samples")
        resampled = []
        for state, samples in items:
            self._check_width(state)
            samples = validate_samples(samples, name=f"track {state.track_id!r}")
            y, rs_state = self._resampler(state.sample_rate).step(state.resampler, samples)
            resampled.append((replace(state, resampler=rs_state), y))
        return self._advance(resampled, refresh)

    def _advance(self, items: Sequence[tuple[TrackState, np.ndarray]],
                 refresh: Sequence[bool] | None = None) -> list[TrackState]:
        """Feed samples at the model's rate: frame, embed new chunks, refresh logits."""
        staged = [self._frames(state, samples) for state, samples in items]
        embedded = self._embed_all([c for _, c, _ in staged])
        states = []
        for (state, _, chroma), emb in zip(staged, embedded):
            if chroma is not None:
                emb = np.concatenate([emb, chroma], axis=1)
            states.append(replace(state, embeddings=np.concatenate([state.embeddings, emb])))
        due = refresh if refresh is not None else [True] * len(states)
        before = [len(s.embeddings) for s, _ in items]
        return self._refresh_logits(states, [bool(d) and len(s.embeddings) > s.n_chunks
                                             for s, d in zip(states, due)], before)

    def _frames(self, state: TrackState, samples: np.ndarray
                ) -> tuple[TrackState, np.ndarray, np.ndarray | None]:
        """Frame new samples; return (state with pending frames, new full chunks, their chroma).

        Chunks are (n, n_mels, chunk_frames); chroma (n, n_chroma) chunk means,
        or None for a model without structure inputs. ``samples`` are mono float32
        at the model's rate from :meth:`step`'s resampler (checked there) or its flush.
        """
        total = state.n_samples + len(samples)
        if total > self.cfg.max_duration_s * self.mel_cfg.sample_rate:
            raise InputError(f"track {state.track_id!r}: longer than the maximum of "
                             f"{self.cfg.max_duration_s:.0f} s")
        cf, sf = self.cfg.chunk_frames, self.cfg.slot_frames
        chunk_chroma = pending_chroma = None
        if self.n_chroma:
            frames, chroma, tail = mel.push_features(state.tail, samples, self.mel_cfg,
                                                     self.n_chroma)
            all_chroma = np.concatenate([state.pending_chroma, chroma])
        else:
            frames, tail = mel.push(state.tail, samples, self.mel_cfg)
        energy = np.concatenate([state.pending_energy, mel.frame_energy(frames)])
        pending = np.concatenate([state.pending, (frames - self.mean) / self.std]).astype(_f32)
        n = len(pending) // cf
        chunks = pending[: n * cf].reshape(n, cf, self.mel_cfg.n_mels).transpose(0, 2, 1)
        slots = energy[: n * cf].reshape(-1, sf).mean(axis=1, dtype=np.float64).astype(_f32)
        if self.n_chroma:
            chunk_chroma = chunk_chroma_values(all_chroma[: n * cf], cf, self.fine_slots)
            pending_chroma = all_chroma[n * cf:]
        return replace(
            state, n_samples=total, tail=tail, pending=pending[n * cf:],
            pending_energy=energy[n * cf:], pending_chroma=pending_chroma,
            slot_energy=np.concatenate([state.slot_energy, slots]),
        ), chunks, chunk_chroma

    def _embed_all(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """One CNN pass over every track's new chunks (equal lengths); split back per track."""
        counts = [len(c) for c in chunks]
        if sum(counts) == 0:
            return [np.zeros((0, self._cnn_dim), _f32) for _ in chunks]
        stacked = torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks)))
        out = torch.cat([self.net.embed(part.to(self.device)).cpu()
                         for part in stacked.split(_EMBED_BATCH)]).numpy()
        return np.split(out, np.cumsum(counts)[:-1])

    def _refresh_logits(self, states: list[TrackState], changed: list[bool],
                        before: list[int]) -> list[TrackState]:
        """Bring the provisional logits of every changed track up to date, in one batched call.

        A track with n chunks now, ``before[i]`` before this step and logits for
        its first L gets the context ending at n - 1 (its last K logits) and,
        for each chunk in [L, before) (added by steps that skipped the refresh),
        the context ending at it (one K-chunk context per such chunk), as
        refreshing after each of those steps would have done; L = before (the
        track was refreshed last step) leaves only the usual context.
        """
        k = self.cfg.context_chunks
        todo = [i for i, c in enumerate(changed) if c]
        if not todo:
            return states
        plan = []  # (track, end) contexts embeddings[end - k + 1 : end + 1]
        for i in todo:
            n, done = len(states[i].embeddings), states[i].n_chunks
            ends = [*range(done, min(before[i], n - 1)), n - 1]
            # a context is superseded when the next one also starts at chunk 0
            plan += [(i, e) for e, nxt in zip(ends, ends[1:] + [None]) if nxt is None or nxt >= k]
        contexts = [states[i].embeddings[max(0, e - k + 1): e + 1] for i, e in plan]
        logits, _ = self._attend(contexts, self.provisional_net)
        full = {i: np.concatenate([states[i].logits, np.zeros(len(states[i].embeddings)
                                                               - states[i].n_chunks, _f32)])
                for i in todo}
        for (i, e), u in zip(plan, logits):  # ascending ends: the latest context wins
            full[i][e + 1 - len(u): e + 1] = u
        out = list(states)
        for i in todo:
            out[i] = replace(states[i], logits=full[i])
        return out

    def _attend(self, sequences: list[np.ndarray], net: torch.nn.Module | None = None
                ) -> tuple[list[np.ndarray], np.ndarray]:
        """Recurrent attention (``net``, default the final model's) over padded chunk-vector
        sequences; (logits per track, y)."""
        lengths = torch.tensor([len(s) for s in sequences])
        width = int(lengths.max())
        batch = np.zeros((len(sequences), width, self._embedding_dim()), _f32)
        for i, s in enumerate(sequences):
            batch[i, : len(s)] = s
        u, y = (net or self.net).attend(torch.from_numpy(batch).to(self.device), lengths)
        u = u.cpu().numpy()
        return [u[i, : len(s)] for i, s in enumerate(sequences)], y.cpu().numpy()

    # -------------------------------------------------------------- results
    def provisional(self, state: TrackState) -> TrackScores:
        """Scores from the provisional logits (see the module docstring)."""
        return TrackScores(
            track_id=state.track_id, duration_s=self._duration(state),
            attention=_softmax(state.logits),
            chunk_lengths=np.full(state.n_chunks, self.cfg.chunk_frames),
            slot_energy=np.concatenate([state.slot_energy, self._tail_slots(state)]),
            final=False, chorusness=self._chorusness(state.logits),
            chroma=self._chunk_chroma(state.embeddings, state.n_chunks),
            slot_chroma=self._slot_chroma(state.embeddings, state.n_chunks))

    @torch.inference_mode()
    def finalize(self, states: Sequence[TrackState]) -> list[TrackScores]:
        """End tracks: embed scoreable tails, run the exact whole-track attention, batched."""
        for state in states:
            self._check_width(state)
        states = [self._with_tail(s) for s in self._flush(states)]
        lengths = [np.full(len(s.embeddings), self.cfg.chunk_frames) for s in states]
        for s, ln in zip(states, lengths):
            if len(s.pending) >= self.min_tail:
                ln[-1] = len(s.pending)
        scored = [i for i, s in enumerate(states) if len(s.embeddings)]
        logits: dict[int, np.ndarray] = {}
        labels: dict[int, dict[str, float]] = {}
        if scored:
            us, ys = self._attend([states[i].embeddings for i in scored])
            for i, u, y in zip(scored, us, ys):
                logits[i] = u
                labels[i] = {name: float(p) for name, p in zip(self.ckpt.labels, y)}
        return [
            TrackScores(
                track_id=s.track_id, duration_s=self._duration(s),
                attention=_softmax(logits.get(i, np.zeros(0, _f32))), chunk_lengths=lengths[i],
                slot_energy=np.concatenate([s.slot_energy, self._tail_slots(s)]),
                final=True, labels=labels.get(i),
                chorusness=self._chorusness(logits.get(i, np.zeros(0, _f32))),
                chroma=self._chunk_chroma(s.embeddings, len(logits.get(i, ()))),
                slot_chroma=self._slot_chroma(s.embeddings, len(logits.get(i, ()))))
            for i, s in enumerate(states)
        ]

    def _flush(self, states: Sequence[TrackState]) -> list[TrackState]:
        """Score the resamplers' last samples (the input taken as zero after its end).

        A whole file's resampling is a step and a flush too, so the tail is
        what offline detection scores.
        """
        out = list(states)
        tails = [(i, self._resampler(s.sample_rate).flush(s.resampler)) for i, s in enumerate(states)]
        tails = [(i, y) for i, y in tails if len(y)]
        if tails:
            advanced = self._advance([(states[i], y) for i, y in tails], [False] * len(tails))
            for (i, _), s in zip(tails, advanced):
                out[i] = s
        return out

    def _with_tail(self, state: TrackState) -> TrackState:
        """Append the embedding of a scoreable final partial chunk (>= min_tail frames)."""
        if len(state.pending) < self.min_tail:
            return state
        chunk = torch.from_numpy(np.ascontiguousarray(state.pending.T[None]))
        emb = self.net.embed(chunk.to(self.device)).cpu().numpy()
        if self.n_chroma:
            tail_chroma = chunk_chroma_values(state.pending_chroma, self.cfg.chunk_frames,
                                              self.fine_slots, partial=True)
            emb = np.concatenate([emb, tail_chroma], axis=1)
        return replace(state, embeddings=np.concatenate([state.embeddings, emb]))

    def _chorusness(self, logits: np.ndarray) -> np.ndarray | None:
        if not self.ckpt.model.chorus_logits:
            return None
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(_f32)

    def _chunk_chroma(self, embeddings: np.ndarray, n_chunks: int) -> np.ndarray | None:
        """The chroma of the first ``n_chunks`` chunk vectors (their last ``n_chroma`` values)."""
        if not self.n_chroma:
            return None
        return np.asarray(embeddings[:n_chunks, -self.n_chroma:], _f32)

    def _slot_chroma(self, embeddings: np.ndarray, n_chunks: int) -> np.ndarray | None:
        """The slot chroma of the first ``n_chunks`` chunk vectors (models with fine_slots)."""
        if not self.fine_slots:
            return None
        n_fine = self.ckpt.model.n_fine
        return np.asarray(embeddings[:n_chunks, -(n_fine + self.n_chroma):-self.n_chroma], _f32)

    def _tail_slots(self, state: TrackState) -> np.ndarray:
        """Energy of the pending frames, one value per (possibly partial) slot."""
        e = state.pending_energy
        sf = self.cfg.slot_frames
        return np.array([e[i:i + sf].mean(dtype=np.float64) for i in range(0, len(e), sf)],
                        dtype=_f32)

    def _duration(self, state: TrackState) -> float:
        return state.n_samples / self.mel_cfg.sample_rate

    def _check_width(self, state: TrackState) -> None:
        """A state whose chunk vectors another model made (another width) is refused, not misread."""
        if state.embeddings is not None and state.embeddings.shape[1] != self._embedding_dim():
            raise InputError(f"track {state.track_id!r}: its state holds chunk vectors of width "
                             f"{state.embeddings.shape[1]}, this model ({self.model_name}) makes "
                             f"{self._embedding_dim()}; the track was started under another model")

    def _embedding_dim(self) -> int:
        """Width of a chunk vector: the CNN embedding, then (structure models) the slot chroma
        and the chunk chroma."""
        return self._cnn_dim + self.ckpt.model.n_extra


def chunk_chroma_values(frames: np.ndarray, chunk_frames: int, fine_slots: int = 0, *,
                        partial: bool = False) -> np.ndarray:
    """The chroma part of chunk vectors, from chroma frames: (n * chunk_frames, d) -> (n, width).

    Per chunk, with ``fine_slots``, the mean of each of its ``fine_slots``
    slots of ``chunk_frames // fine_slots`` frames, then the chunk's mean
    (width ``(fine_slots + 1) * d``). ``partial``: ``frames`` are one final
    partial chunk (1 to ``chunk_frames`` frames), which gets the means of the
    slots it has frames in and zeros for the rest. The trainer builds its
    chunk vectors with this function too.
    """
    frames = np.asarray(frames, _f32)
    if partial:
        parts = []
        if fine_slots:
            sf = chunk_frames // fine_slots
            slots = np.zeros((fine_slots, frames.shape[1]), _f32)
            for k in range(0, len(frames), sf):
                slots[k // sf] = frames[k:k + sf].mean(axis=0, dtype=np.float64)
            parts.append(slots.reshape(1, -1))
        parts.append(chunk_means(frames, len(frames)))
        return np.concatenate(parts, axis=1)
    means = chunk_means(frames, chunk_frames)
    if not fine_slots:
        return means
    n = len(frames) // chunk_frames
    slots = chunk_means(frames[: n * chunk_frames], chunk_frames // fine_slots).reshape(
        n, fine_slots * frames.shape[1])
    return np.concatenate([slots, means], axis=1)


def chunk_means(frames: np.ndarray, chunk_frames: int) -> np.ndarray:
    """Mean of every ``chunk_frames`` consecutive rows: (n * chunk_frames, d) -> (n, d) float32."""
    n = len(frames) // chunk_frames
    return frames[: n * chunk_frames].reshape(n, chunk_frames, frames.shape[1]).mean(
        axis=1, dtype=np.float64).astype(_f32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    if len(logits) == 0:
        return np.zeros(0, _f32)
    z = np.exp(logits.astype(np.float64) - logits.max())
    return (z / z.sum()).astype(_f32)


def whole_track_chunks(frames: np.ndarray, cfg: ScorerConfig, min_tail: int) -> list[np.ndarray]:
    """Split normalised frames (n, n_mels) into the scorer's chunks, each (n_mels, t).

    Full chunks of ``chunk_frames``, plus the final partial one when it has at
    least ``min_tail`` frames: exactly what the streaming scorer embeds.
    """
    cf = cfg.chunk_frames
    chunks = [frames[i:i + cf].T for i in range(0, len(frames), cf)]
    if chunks and chunks[-1].shape[1] < min(cf, min_tail):
        chunks.pop()
    return chunks
