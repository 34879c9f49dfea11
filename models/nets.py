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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch = {self.arch!r}: expected one of {sorted(ARCHS)}")
        if self.arch == "huang" and not (
            len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides)
        ):
            raise ConfigError("model.conv_channels/kernels/strides must have the same length")
        if self.n_labels < 1:
            raise ConfigError(f"model.n_labels = {self.n_labels}: must be at least 1")

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


class AttentionNet(nn.Module):
    """Chunk CNN + recurrent attention. Subclasses define ``embed`` and ``attend``."""

    config: ModelConfig

    def embed(self, chunks: Tensor) -> Tensor:
        """(N, n_mels, T) normalised log-mel chunks -> (N, E) chunk vectors."""
        raise NotImplementedError

    def attend(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, E) chunk vectors, (B,) lengths -> logits u (B, C), y (B, n_labels).

        Positions at or past a track's length get logit ``-inf``.
        """
        raise NotImplementedError

    @property
    def min_frames(self) -> int:
        """Shortest chunk, in frames, that ``embed`` accepts."""
        raise NotImplementedError

    def forward(self, chunks: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Whole-track pass: (B, C, n_mels, T) chunks, (B,) lengths -> (attention (B, C), y).

        This is the reference the streaming scorer must reproduce.
        """
        b, c = chunks.shape[:2]
        emb = self.embed(chunks.flatten(0, 1)).view(b, c, -1)
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
        self.lstm = nn.LSTM(channels, cfg.lstm_hidden, num_layers=cfg.lstm_layers,
                            batch_first=True, bidirectional=True,
                            dropout=cfg.dropout_rnn if cfg.lstm_layers > 1 else 0.0)
        self.att_w = nn.Linear(2 * cfg.lstm_hidden, cfg.attention_dim)  # [W_f W_b] and bias
        self.att_v = nn.Linear(cfg.attention_dim, 1, bias=False)  # v

    @property
    def min_frames(self) -> int:
        n = 1
        for k, s in reversed(list(zip(self.config.conv_kernels, self.config.conv_strides))):
            n = (n - 1) * s + k
        return n

    def embed(self, chunks: Tensor) -> Tensor:
        return self.conv(chunks).amax(dim=2)

    def attend(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        hidden = _bilstm(self.lstm, emb, lengths)
        logits = self.att_v(torch.tanh(self.att_w(hidden))).squeeze(2)
        logits = _mask(logits, lengths)
        a = torch.softmax(logits, dim=1)
        o = torch.sigmoid(self.fc(emb))  # (B, C, L): per-chunk label probabilities
        y = torch.einsum("bc,bcl->bl", a, o)
        return logits, y


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
        self.lstm = nn.LSTM(channels, h, num_layers=cfg.lstm_layers, batch_first=True,
                            bidirectional=True,
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

    @property
    def min_frames(self) -> int:
        return 2 ** self.n_pools

    def embed(self, chunks: Tensor) -> Tensor:
        return self.conv(chunks).amax(dim=2)

    def attend(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        hidden = _bilstm(self.lstm, emb, lengths)  # (B, C, 2h)
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
        return logits, torch.sigmoid(self.out(m))


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
