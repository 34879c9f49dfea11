"""The two attention models, behind one chunk-level interface.

Both papers' models are split the same way so that the scorer can stream them:

- ``embed(chunks)``: a 1-D CNN over the time axis of one chunk's log-mel
  frames (mel bands as channels), global max-pooled to one vector per chunk.
- ``attend(emb, lengths)``: the recurrent attention over a track's sequence of
  chunk vectors, returning per-chunk attention logits ``u`` (softmax over the
  chunks gives the attention distribution) and the song-level label
  probabilities ``y``.

Huang, Chou, Yang 2017 (``arch: huang``): conv 64/128/128/256, lengths
3/4/4/4, strides 2/2/1/1, ReLU; Bi-LSTM attention, eq. 1-2
(u_c = v^T tanh(W_f V_cf + W_b V_cb + b)); late fusion y = sum_c a_c o_c
(eq. 3) with o_c the per-chunk label probabilities from FC layers.

Ha et al. 2018 CRAN (``arch: cran``), Table 3: four blocks of two 64-filter
size-3 convolutions (ELU) and a size-2 max-pool, a 2-layer Bi-LSTM (512),
attention by eq. 3-8, FC layers 500/300, dropout 0.2 (recurrent) / 0.5 (FC).
One deviation: CRAN's time slot is our 3 s chunk (its conv output is
max-pooled per chunk), so that both models stream through the same scorer.
Labels are multi-label (sigmoid) rather than CRAN's single-genre softmax.

Structure inputs (``n_chroma > 0``, off in the papers' configuration)
---------------------------------------------------------------------
Choruses recur, and a repeat is a property of the whole track that a
per-chunk CNN cannot see. With ``n_chroma`` set, each chunk vector handed to
``attend`` is the CNN embedding followed by the chunk's mean chroma
(``n_chroma`` values, computed by the scorer from the same STFT as the mel).
``attend`` turns the chroma sequence into :data:`N_REPETITION` repetition
features per chunk (:func:`repetition_features`: how strongly the ~12 s of
harmony and melody starting at that chunk recur elsewhere in the track) and
feeds them to the Bi-LSTM beside the embedding. They depend on the whole
sequence passed in: on the whole track at finalize (exact), on the
provisional context while streaming (see :mod:`models.scorer`). The cost is
one C x C similarity matrix per track (C <= 400 chunks).

With ``fine_slots`` the chunk vector also carries the chunk's chroma per
slot (``fine_slots`` slots of 0.3 s, before the chunk's mean chroma), and
:func:`phrase_similarity` compares phrases slot by slot: four
:func:`phrase_features` join the Bi-LSTM's inputs. ``phrase_links`` adds a
second Bi-LSTM whose inputs are each chunk's first Bi-LSTM state and the
states gathered from the other hearings of its phrase (:func:`link_phrases`);
the attention (chorus) logits are read from it, and the section heads sit on
both Bi-LSTMs. Like the repetition features, all of this depends on the whole
sequence passed in, so finalize is exact and provisional results use the
provisional context.

``track_norm`` subtracts the track's mean embedding from every chunk's
before the Bi-LSTM, so the attention reads how a chunk differs from the rest
of its track (louder, denser, higher) rather than the renderer's absolute
timbre. ``chorus_logits`` says the attention logits were trained as per-chunk
chorus logits (BCE against annotated chorus positions, with the song-level
labels): the highlight window then reads ``sigmoid(u)``, the chorusness.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an attention model; stored in every checkpoint."""

    arch: str = "huang"  # "huang" | "cran"
    n_mels: int = 128
    n_labels: int = 5
    conv_channels: tuple[int, ...] = (64, 128, 128, 256)
    conv_kernels: tuple[int, ...] = (3, 4, 4, 4)
    conv_strides: tuple[int, ...] = (2, 2, 1, 1)
    lstm_hidden: int = 512
    lstm_layers: int = 1
    attention_dim: int = 256
    fc_dims: tuple[int, ...] = (256,)
    dropout_rnn: float = 0.0
    dropout_fc: float = 0.0
    dropout_in: float = 0.0  # training only: dropout on the Bi-LSTM's inputs (chunk vectors + structure)
    n_chroma: int = 0  # > 0: chunk chroma appended to the chunk vectors -> repetition features
    n_repetition: int = 4  # how many of repetition_features' values feed the Bi-LSTM (4 or 7)
    track_norm: bool = False  # subtract the track's mean embedding before the Bi-LSTM
    chorus_logits: bool = False  # attention logits trained as chorus logits (window: sigmoid)
    n_sections: int = 0  # > 0: a training-only head classifying each chunk's section kind
    fine_slots: int = 0  # > 0: chunk vectors also carry the chunk's chroma per slot (fine phrase similarity)
    phrase_links: bool = False  # the second Bi-LSTM over states gathered from matching phrases
    lstm2_hidden: int = 64

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch = {self.arch!r}: expected one of {sorted(ARCHS)}")
        if self.arch == "huang" and not (
            len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides)
        ):
            raise ConfigError("model.conv_channels/kernels/strides must have the same length")
        if self.n_labels < 1:
            raise ConfigError(f"model.n_labels = {self.n_labels}: must be at least 1")
        if self.n_chroma < 0:
            raise ConfigError(f"model.n_chroma = {self.n_chroma}: must be >= 0 (0: no chroma)")
        for key in ("dropout_rnn", "dropout_fc", "dropout_in"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} = {getattr(self, key)}: must be in [0, 1)")
        if not 1 <= self.n_repetition <= N_REPETITION:
            raise ConfigError(f"model.n_repetition = {self.n_repetition}: must be in "
                              f"1..{N_REPETITION}")
        if self.fine_slots < 0 or (self.fine_slots and not self.n_chroma):
            raise ConfigError(f"model.fine_slots = {self.fine_slots}: must be >= 0, and > 0 only "
                              "with n_chroma > 0 (the slots hold chroma)")
        if self.phrase_links and not (self.fine_slots and self.arch == "huang"):
            raise ConfigError("model.phrase_links: needs fine_slots > 0 and arch huang")
        if self.lstm2_hidden < 1:
            raise ConfigError(f"model.lstm2_hidden = {self.lstm2_hidden}: must be at least 1")

    @property
    def n_structure(self) -> int:
        """Per-chunk structure features fed to the Bi-LSTM beside the embedding."""
        return (self.n_repetition if self.n_chroma else 0) + (N_PHRASE if self.fine_slots else 0)

    @property
    def n_fine(self) -> int:
        """Slot chroma values per chunk vector (``fine_slots * n_chroma``)."""
        return self.fine_slots * self.n_chroma

    @property
    def n_extra(self) -> int:
        """Values after the CNN embedding in a chunk vector: slot chroma, then chunk chroma."""
        return self.n_fine + self.n_chroma

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ConfigError(f"model config: {exc}") from None


def huang(n_labels: int, **kw) -> ModelConfig:
    """Huang 2017 §II.D full size (3.7 M parameters, 15 MB)."""
    return ModelConfig(arch="huang", n_labels=n_labels, **kw)


def cran(n_labels: int, **kw) -> ModelConfig:
    """Ha et al. 2018 Table 3 (9.4 M parameters)."""
    base = dict(arch="cran", n_labels=n_labels, conv_channels=(64,) * 8, conv_kernels=(3,) * 8,
                conv_strides=(1,) * 8, lstm_hidden=512, lstm_layers=2, attention_dim=256,
                fc_dims=(500, 300), dropout_rnn=0.2, dropout_fc=0.5)
    base.update(kw)
    return ModelConfig(**base)


def tiny(arch: str = "huang", n_labels: int = 5) -> ModelConfig:
    """A debug-size model for tests (a few thousand parameters)."""
    if arch == "cran":
        return cran(n_labels, conv_channels=(8,) * 8, lstm_hidden=8, attention_dim=8,
                    fc_dims=(8,), dropout_rnn=0.0, dropout_fc=0.0)
    return huang(n_labels, conv_channels=(8, 8, 8, 16), lstm_hidden=8, attention_dim=8,
                 fc_dims=(8,))


N_REPETITION = 7
REPETITION_FIRST_SIM = 0.5  # a match this close counts as "the same material" for first_seen
REPETITION_SPAN = (-1, 0, 1, 2)  # chunk offsets stacked per chroma vector (~12 s, a phrase)
REPETITION_MIN_LAG = 4  # chunks (~12 s): closer positions are the same passage, not a repeat


def _centred_unit(x: Tensor, valid: Tensor) -> Tensor:
    """Rows of ``x`` (B, N, d) centred on the mean of the valid ones (``valid`` (B, N)), zero
    past them, unit length: a similarity then reads what sets passages apart."""
    m = valid[..., None].to(x.dtype)
    x = (x - (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)) * m
    return x / (x.norm(dim=2, keepdim=True) + 1e-6)


def chunk_phrase_similarity(chroma: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarity of the chunk-chroma phrases (chunks ``c + REPETITION_SPAN`` stacked):
    (B, C, n_chroma) -> ((B, C, C), valid chunks (B, C))."""
    c = chroma.shape[1]
    pos = torch.arange(c, device=chroma.device)
    valid = pos[None, :] < lengths.to(chroma.device)[:, None]  # (B, C)
    x = _centred_unit(chroma, valid)
    parts = []
    for off in REPETITION_SPAN:
        shifted = torch.roll(x, shifts=-off, dims=1)
        src = pos + off
        parts.append(shifted * ((src >= 0) & (src < c))[None, :, None])
    v = torch.cat(parts, dim=2)
    v = v / (v.norm(dim=2, keepdim=True) + 1e-6)
    return v @ v.transpose(1, 2), valid


def repetition_features(chroma: Tensor, lengths: Tensor) -> Tensor:
    """How strongly the passage at each chunk recurs elsewhere in its track.

    Chroma is centred on the track's mean; the chroma of chunks ``c + REPETITION_SPAN`` is stacked into one unit
    vector per chunk (a ~12 s phrase of harmony and melody); their cosine
    self-similarity matrix, restricted to pairs at least
    :data:`REPETITION_MIN_LAG` chunks apart, gives per chunk: the best match,
    the mean of the best three, the mean similarity, and the best match minus
    the track's mean best match, the best match among earlier and among
    later chunks (has this material been heard before? will it come back?),
    and ``first_seen``: where in the track (0 = start, 1 = end) this
    material was first heard, i.e. the earliest of the chunk itself and its
    matches closer than :data:`REPETITION_FIRST_SIM`. POP909's chorus is the
    *second* melodic material, so the order of first appearance matters as
    much as the repeat itself. Zeros where a track has no such pair.

    Parameters
    ----------
    chroma : Tensor, shape (B, C, n_chroma), non-negative
    lengths : Tensor, shape (B,), chunks per track

    Returns
    -------
    Tensor, shape (B, C, N_REPETITION); zero past each track's length
    """
    b, c, _ = chroma.shape
    pos = torch.arange(c, device=chroma.device)
    sim, valid = chunk_phrase_similarity(chroma, lengths)
    pair = ((pos[:, None] - pos[None, :]).abs() >= REPETITION_MIN_LAG)[None] \
        & valid[:, :, None] & valid[:, None, :]
    has = pair.any(dim=2)  # (B, C)
    k = min(3, c)
    top = sim.masked_fill(~pair, -1.0).topk(k, dim=2).values  # (B, C, k)
    best = top[..., 0]
    top_n = pair.sum(dim=2).clamp(max=k)
    top_mean = (top.clamp(min=0) * (torch.arange(k, device=chroma.device)[None, None]
                                     < top_n[..., None])).sum(2) / top_n.clamp(min=1)
    mean = (sim * pair).sum(2) / pair.sum(2).clamp(min=1)
    n_has = (has & valid).sum(1, keepdim=True).clamp(min=1)
    best_mean = (best * has).sum(1, keepdim=True) / n_has
    earlier = pos[None, :] < pos[:, None]  # (C, C): column before row
    past = sim.masked_fill(~(pair & earlier[None]), -1.0).amax(2).clamp(min=0)
    future = sim.masked_fill(~(pair & ~earlier[None]), -1.0).amax(2).clamp(min=0)
    same = pair & (sim >= REPETITION_FIRST_SIM)
    big = torch.full_like(sim, float(c))
    first = torch.minimum(torch.where(same, pos[None, None, :].to(sim.dtype), big).amin(2),
                          pos[None, :].to(sim.dtype))
    first_seen = first / (lengths.to(sim.device)[:, None] - 1).clamp(min=1).to(sim.dtype)
    feats = torch.stack([best, top_mean, mean, best - best_mean, past, future, first_seen], dim=2)
    return feats * (has & valid)[..., None]


N_PHRASE = 4  # per-chunk features of the fine phrase similarity (phrase_features)
PHRASE_TOL_SLOTS = 5  # a repeat may lie this many slots (~1.5 s) off the chunk grid
PHRASE_MATCH = 0.5  # fine phrase similarity above this: "the phrase was heard there"
PHRASE_SHARPNESS = 20.0  # of the soft match weight sigmoid(sharpness * (sim - threshold))
PHRASE_EARLY = 5.0  # the earliest-match gather weighs position t (0..1) by exp(-PHRASE_EARLY t)


def phrase_similarity(fine: Tensor, lengths: Tensor, slots: int,
                      columns: Tensor | None = None) -> Tensor:
    """Fine phrase similarity between the chunks of each track.

    ``fine`` holds each chunk's chroma per slot (``slots`` slots of ``d``
    values, concatenated). Slot chroma is centred on the track's mean and
    unit-normalised; the phrase of chunk c is the slots of chunks
    ``c + REPETITION_SPAN`` (~12 s); the similarity of chunks i and j is the
    best, over shifts of j's phrase by up to :data:`PHRASE_TOL_SLOTS` slots,
    of the mean cosine similarity of the aligned slots: a diagonal path in the
    slot self-similarity matrix, so a repeat is found at slot (0.3 s)
    resolution wherever it falls on the 3 s chunk grid, and the order of the
    chords and melody notes within the phrase counts, not only their mix.

    Parameters
    ----------
    fine : Tensor, shape (B, C, slots * d)
    lengths : Tensor, shape (B,), chunks per track
    slots : slots per chunk
    columns : the chunks j to compare every chunk with (default: all); a few columns
        cost O(C) instead of O(C^2) and equal those columns of the whole matrix

    Returns
    -------
    Tensor, shape (B, C, C) (or (B, C, len(columns))); -1 where either chunk is past its
    track's length
    """
    b, c, width = fine.shape
    d = width // slots
    n = c * slots
    valid = torch.arange(n, device=fine.device)[None, :] < (lengths.to(fine.device)[:, None] * slots)
    x = _centred_unit(fine.reshape(b, n, d), valid)
    tol = PHRASE_TOL_SLOTS
    span = len(REPETITION_SPAN) * slots
    lead = -REPETITION_SPAN[0] * slots + tol
    xp = F.pad(x, (0, 0, lead, span + tol))  # slot s of x is slot s + lead of xp
    start = (torch.arange(c, device=fine.device) + REPETITION_SPAN[0]) * slots + lead
    window = torch.arange(span, device=fine.device)
    q = xp[:, start[:, None] + window[None, :]]  # (B, C, span, d)
    cv = valid[:, ::slots]
    if columns is None:  # the whole matrix: one product per shift (memory C x C, not 11 x C x C)
        best = None
        for shift in range(-tol, tol + 1):
            r = xp[:, (start + shift)[:, None] + window[None, :]]
            sim = torch.einsum("bild,bjld->bij", q, r) / span
            best = sim if best is None else torch.maximum(best, sim)
        return best.masked_fill(~(cv[:, :, None] & cv[:, None, :]), -1.0)
    # a few columns: every shift in one product (one call instead of 11)
    cols = columns.to(fine.device)
    shifts = torch.arange(-tol, tol + 1, device=fine.device)
    r = xp[:, start[cols][None, :, None] + shifts[:, None, None] + window[None, None, :]]
    sim = torch.einsum("bild,bsjld->bsij", q, r) / span
    return sim.amax(1).masked_fill(~(cv[:, :, None] & cv[:, cols][:, None, :]), -1.0)


def phrase_features(sim: Tensor, lengths: Tensor) -> Tensor:
    """Per chunk, from :func:`phrase_similarity`: where else its phrase is heard.

    The best match among chunks at least :data:`REPETITION_MIN_LAG` earlier and
    later (clipped to [0, 1]); where the phrase was first heard (the earliest
    such earlier chunk above :data:`PHRASE_MATCH`, else the chunk itself, as a
    fraction of the track); and whether it was heard before (0/1). POP909's
    chorus is the second melodic material in order of first appearance, and
    the material after it recurs as the chorus does: when a passage was first
    heard tells them apart where a repeat does not.

    Returns
    -------
    Tensor, shape (B, C, N_PHRASE); zero past each track's length
    """
    b, c, _ = sim.shape
    pos = torch.arange(c, device=sim.device)
    valid = pos[None, :] < lengths.to(sim.device)[:, None]
    past, future = _lag_masks(c, valid)
    best_past = sim.masked_fill(~past, -1.0).amax(2).clamp(min=0)
    best_future = sim.masked_fill(~future, -1.0).amax(2).clamp(min=0)
    heard = past & (sim > PHRASE_MATCH)
    first = torch.where(heard.any(2), heard.to(sim.dtype).argmax(2), pos[None].expand(b, c))
    n = lengths.to(sim.device)[:, None].clamp(min=2).to(sim.dtype)
    feats = torch.stack([best_past, best_future, first.to(sim.dtype) / (n - 1),
                         heard.any(2).to(sim.dtype)], dim=2)
    return feats * valid[..., None]


def _lag_masks(c: int, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, C) masks of the valid pairs whose column is at least REPETITION_MIN_LAG chunks
    before / after the row."""
    pos = torch.arange(c, device=valid.device)
    lag = pos[:, None] - pos[None, :]
    pair = valid[:, :, None] & valid[:, None, :]
    return pair & (lag >= REPETITION_MIN_LAG)[None], pair & (lag <= -REPETITION_MIN_LAG)[None]


def link_phrases(hidden: Tensor, sim: Tensor, lengths: Tensor, threshold: Tensor) -> Tensor:
    """Gather each chunk's Bi-LSTM states from the chunks holding the same phrase.

    Weights ``sigmoid(PHRASE_SHARPNESS * (sim - threshold))`` over the chunks at
    least :data:`REPETITION_MIN_LAG` earlier, the same over the later ones, and
    the earlier ones again weighted towards the start of the track (the
    phrase's first hearing): the three weighted means, (B, C, 3 * H). A
    chorus's later repeats then read what the network made of its first
    hearing (the material that followed the verse), and the first hearing
    what became of it later.
    """
    c = sim.shape[1]
    pos = torch.arange(c, device=sim.device)
    valid = pos[None, :] < lengths.to(sim.device)[:, None]
    past, future = _lag_masks(c, valid)
    w = torch.sigmoid(PHRASE_SHARPNESS * (sim - threshold))
    n = lengths.to(sim.device)[:, None].clamp(min=1).to(sim.dtype)
    early = torch.exp(-PHRASE_EARLY * pos[None, :].to(sim.dtype) / n)[:, None, :]  # (B, 1, C)
    out = []
    for mask, bias in ((past, None), (future, None), (past, early)):
        wk = w * mask if bias is None else w * mask * bias
        out.append((wk @ hidden) / (wk.sum(2, keepdim=True) + 1e-3))
    return torch.cat(out, dim=2)


class AttentionNet(nn.Module):
    """Chunk CNN + recurrent attention. Subclasses define ``embed`` and ``attend_all``.

    ``attend_all`` also returns the Bi-LSTM outputs (B, C, 2h), which the
    optional section head (``n_sections``, a training signal only) reads.
    """

    config: ModelConfig

    def attend(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, E) chunk vectors, (B,) lengths -> logits u (B, C), y (B, n_labels).

        Positions at or past a track's length get logit ``-inf``.
        """
        logits, y, _ = self.attend_all(emb, lengths)
        return logits, y

    def attend_all(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`attend` plus the Bi-LSTM outputs (B, C, 2 * lstm_hidden)."""
        raise NotImplementedError

    def section_logits(self, hidden: Tensor) -> Tensor:
        """``attend_all``'s hidden states -> (B, C, n_sections) section-kind logits of the last
        Bi-LSTM."""
        return self.section_heads(hidden)[-1]

    def section_heads(self, hidden: Tensor) -> list[Tensor]:
        """Every section head's logits, (B, C, n_sections) each: the Bi-LSTM's, and with
        ``phrase_links`` the first Bi-LSTM's, then the second's (both trained)."""
        if self.config.phrase_links:
            h1 = hidden[..., : 2 * self.config.lstm_hidden]
            return [self.sections1(h1), self.sections(hidden[..., h1.shape[2]:])]
        return [self.sections(hidden)]

    def _add_shared_layers(self, cfg: "ModelConfig") -> None:
        """Layers both architectures have: the Bi-LSTM input dropout and the optional section head."""
        self.drop_in = nn.Dropout(cfg.dropout_in)  # identity in eval mode: inference is unchanged
        if cfg.n_sections:
            width = 2 * (cfg.lstm2_hidden if cfg.phrase_links else cfg.lstm_hidden)
            self.sections = nn.Linear(width, cfg.n_sections)
            if cfg.phrase_links:
                self.sections1 = nn.Linear(2 * cfg.lstm_hidden, cfg.n_sections)

    def recurrent_inputs(self, emb: Tensor, lengths: Tensor
                         ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Split chunk vectors into (Bi-LSTM input, CNN embedding, phrase similarity).

        ``emb`` is (B, C, E + n_fine + n_chroma): the CNN embedding, the slot
        chroma (``fine_slots``), the chunk chroma. Returns the Bi-LSTM input
        (B, C, E + n_structure), the CNN embedding (B, C, E) and, with
        ``fine_slots``, the (B, C, C) :func:`phrase_similarity` (else None).
        """
        cfg = self.config
        cnn = emb[..., : emb.shape[2] - cfg.n_extra] if cfg.n_extra else emb
        x = cnn
        if cfg.track_norm:
            valid = (torch.arange(emb.shape[1], device=emb.device)[None, :]
                     < lengths.to(emb.device)[:, None]).unsqueeze(2)
            mean = (cnn * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
            x = (cnn - mean) * valid
        sim = None
        if cfg.n_chroma:
            rep = repetition_features(emb[..., -cfg.n_chroma:], lengths)[..., : cfg.n_repetition]
            x = torch.cat([x, rep], dim=2)
        if cfg.fine_slots:
            fine = emb[..., cnn.shape[2]: cnn.shape[2] + cfg.n_fine]
            sim = phrase_similarity(fine, lengths, cfg.fine_slots)
            x = torch.cat([x, phrase_features(sim, lengths)], dim=2)
        return x, cnn, sim

    def embed(self, chunks: Tensor) -> Tensor:
        """(N, n_mels, T) normalised log-mel chunks -> (N, E) chunk vectors."""
        raise NotImplementedError

    @property
    def min_frames(self) -> int:
        """Shortest chunk, in frames, that ``embed`` accepts."""
        raise NotImplementedError

    def forward(self, chunks: Tensor, lengths: Tensor, chroma: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """Whole-track pass: (B, C, n_mels, T) chunks, (B,) lengths -> (attention (B, C), y).

        ``chroma`` (B, C, n_fine + n_chroma), each chunk's slot chroma (with
        ``fine_slots``) then its mean chroma, is required when
        ``config.n_chroma`` > 0. This is the reference the streaming scorer
        must reproduce.
        """
        b, c = chunks.shape[:2]
        emb = self.embed(chunks.flatten(0, 1)).view(b, c, -1)
        if self.config.n_chroma:
            n = self.config.n_extra
            if chroma is None or chroma.shape[2] != n:
                raise ConfigError(f"this model reads chunk chroma: pass chroma (B, C, {n})")
            emb = torch.cat([emb, chroma], dim=2)
        logits, y = self.attend(emb, lengths)
        return torch.softmax(logits, dim=1), y


class HuangNet(AttentionNet):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        channels = cfg.n_mels
        for out, k, s in zip(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides):
            layers += [nn.Conv1d(channels, out, k, stride=s), nn.ReLU()]
            channels = out
        self.conv = nn.Sequential(*layers)
        fc: list[nn.Module] = []
        width = channels
        for d in cfg.fc_dims:
            fc += [nn.Linear(width, d), nn.ReLU(), nn.Dropout(cfg.dropout_fc)]
            width = d
        self.fc = nn.Sequential(*fc, nn.Linear(width, cfg.n_labels))
        self.lstm = nn.LSTM(channels + cfg.n_structure, cfg.lstm_hidden,
                            num_layers=cfg.lstm_layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout_rnn if cfg.lstm_layers > 1 else 0.0)
        top = cfg.lstm_hidden
        if cfg.phrase_links:  # a second Bi-LSTM over [h, linked states, phrase features]
            self.link_threshold = nn.Parameter(torch.tensor(PHRASE_MATCH))
            self.lstm2 = nn.LSTM(2 * cfg.lstm_hidden * 4 + N_PHRASE, cfg.lstm2_hidden,
                                 batch_first=True, bidirectional=True)
            top = cfg.lstm2_hidden
        self.att_w = nn.Linear(2 * top, cfg.attention_dim)  # [W_f W_b] and bias
        # v; with phrase links a bias too: the logits are chorus logits read through a sigmoid
        self.att_v = nn.Linear(cfg.attention_dim, 1, bias=cfg.phrase_links)
        self._add_shared_layers(cfg)

    @property
    def min_frames(self) -> int:
        n = 1
        for k, s in reversed(list(zip(self.config.conv_kernels, self.config.conv_strides))):
            n = (n - 1) * s + k
        return n

    def embed(self, chunks: Tensor) -> Tensor:
        return self.conv(chunks).amax(dim=2)

    def attend_all(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, cnn, sim = self.recurrent_inputs(emb, lengths)
        hidden = _bilstm(self.lstm, self.drop_in(x), lengths)
        top = hidden
        if self.config.phrase_links:
            linked = link_phrases(hidden, sim, lengths, self.link_threshold)
            z = torch.cat([hidden, linked, x[..., -N_PHRASE:]], dim=2)
            top = _bilstm(self.lstm2, self.drop_in(z), lengths)
            hidden = torch.cat([hidden, top], dim=2)
        logits = self.att_v(torch.tanh(self.att_w(top))).squeeze(2)
        logits = _mask(logits, lengths)
        a = torch.softmax(logits, dim=1)
        o = torch.sigmoid(self.fc(cnn))  # (B, C, L): per-chunk label probabilities
        y = torch.einsum("bc,bcl->bl", a, o)
        return logits, y, hidden


class CranNet(AttentionNet):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        blocks: list[nn.Module] = []
        channels = cfg.n_mels
        pairs = list(zip(cfg.conv_channels, cfg.conv_kernels))
        for i, (out, k) in enumerate(pairs):
            blocks += [nn.Conv1d(channels, out, k, padding=k // 2), nn.ELU()]
            channels = out
            if i % 2 == 1:
                blocks.append(nn.MaxPool1d(2))
        self.conv = nn.Sequential(*blocks)
        self.n_pools = len(pairs) // 2
        h, a = cfg.lstm_hidden, cfg.attention_dim
        self.lstm = nn.LSTM(channels + cfg.n_structure, h, num_layers=cfg.lstm_layers,
                            batch_first=True, bidirectional=True,
                            dropout=cfg.dropout_rnn if cfg.lstm_layers > 1 else 0.0)
        self.ts = nn.Linear(channels, a)  # ^TS W, eq. 4
        self.fc1 = nn.Linear(2 * h, a)  # ^FC W, eq. 5 and 8
        self.aw = nn.Linear(a, 1)  # ^A W, eq. 6
        self.p = nn.Linear(a, a, bias=False)  # P, eq. 7
        fc: list[nn.Module] = []
        width = a
        for d in cfg.fc_dims:
            fc += [nn.Dropout(cfg.dropout_fc), nn.Linear(width, d), nn.ELU()]
            width = d
        self.out = nn.Sequential(*fc, nn.Linear(width, cfg.n_labels))
        self._add_shared_layers(cfg)

    @property
    def min_frames(self) -> int:
        return 2 ** self.n_pools

    def embed(self, chunks: Tensor) -> Tensor:
        return self.conv(chunks).amax(dim=2)

    def attend_all(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, emb, _ = self.recurrent_inputs(emb, lengths)
        hidden = _bilstm(self.lstm, self.drop_in(x), lengths)  # (B, C, 2h)
        h = self.config.lstm_hidden
        idx = (lengths - 1).clamp(min=0).to(hidden.device)
        last_fwd = hidden[torch.arange(len(idx), device=hidden.device), idx, :h]
        first_bwd = hidden[:, 0, h:]
        u_prime = torch.cat([last_fwd, first_bwd], dim=1)  # eq. 2, the track summary
        f = torch.tanh(self.fc1(u_prime))  # eq. 5
        v = torch.tanh(self.ts(emb)) * f[:, None, :]  # eq. 3-4
        logits = _mask(torch.tanh(self.aw(v)).squeeze(2), lengths)  # eq. 6 before softmax
        alpha = torch.softmax(logits, dim=1)
        z = self.p(torch.einsum("bc,bca->ba", alpha, v))  # eq. 7
        m = torch.tanh(z) * f  # eq. 8
        return logits, torch.sigmoid(self.out(m)), hidden


ARCHS = {"huang": HuangNet, "cran": CranNet}


def build(cfg: ModelConfig) -> AttentionNet:
    """A freshly initialised model for ``cfg``."""
    return ARCHS[cfg.arch](cfg)


def _bilstm(lstm: nn.LSTM, emb: Tensor, lengths: Tensor) -> Tensor:
    """Run a bidirectional LSTM on padded sequences; (B, C, E) -> (B, C, 2h), zero-padded."""
    packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.shape[1])
    return out


def _mask(logits: Tensor, lengths: Tensor) -> Tensor:
    positions = torch.arange(logits.shape[1], device=logits.device)
    return logits.masked_fill(positions[None, :] >= lengths.to(logits.device)[:, None],
                              float("-inf"))
