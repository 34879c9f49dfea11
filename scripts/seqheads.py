"""Sequence heads compared by scripts/seqlab.py (frozen CNN embeddings in, chorus logits out)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models import checkpoint as ckpts
from models import nets
from models.nets import REPETITION_MIN_LAG, _bilstm, _mask
from models.nets import chunk_phrase_similarity as phrase_similarity


class Base(nn.Module):
    """The shipped model's sequence part (HuangNet.attend_all + section head)."""

    def __init__(self, cfg: nets.ModelConfig):
        super().__init__()
        self.net = nets.build(cfg)
        del self.net.conv

    def forward(self, emb, chroma, lengths, letters=None, fine=None):
        u, y, hidden = self.net.attend_all(torch.cat([emb, chroma], 2), lengths)
        return {"logits": u, "y": y, "sections": self.net.section_logits(hidden)}


class Prop(nn.Module):
    """BiLSTM -> similarity-weighted mean of the hidden states (the same material elsewhere)
    -> second BiLSTM over [h, m] -> chorus logits. ``mode``: chroma | learned | both."""

    def __init__(self, cfg: nets.ModelConfig, mode: str = "chroma", tau: float = 0.1,
                 hidden2: int = 64, parts: str = "all", drop: float = 0.0):
        super().__init__()
        self.base = Base(cfg)
        self.cfg = cfg
        h = cfg.lstm_hidden
        self.mode, self.tau, self.parts = mode, tau, parts
        n_parts = {"all": 1, "pastfut": 2}[parts]
        if mode in ("learned", "both"):
            self.q = nn.Linear(2 * h, 32)
            self.k = nn.Linear(2 * h, 32)
            self.w_sim = nn.Parameter(torch.tensor(10.0))
        self.drop = nn.Dropout(drop)
        self.lstm2 = nn.LSTM(2 * h * (1 + n_parts) + 1, hidden2, batch_first=True,
                             bidirectional=True)
        self.att = nn.Sequential(nn.Linear(2 * hidden2, 64), nn.Tanh(), nn.Linear(64, 1))
        self.sec = nn.Linear(2 * hidden2, cfg.n_sections)

    def forward(self, emb, chroma, lengths, letters=None, fine=None):
        net = self.base.net
        x, cnn, _ = net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        h1 = _bilstm(net.lstm, x, lengths)
        sim, valid = phrase_similarity(chroma, lengths)
        if self.mode == "oracle":  # the annotated phrase letters: same letter = same material
            sim = ((letters[:, :, None] == letters[:, None, :]) & (letters[:, :, None] >= 0)).float()
        c = sim.shape[1]
        pos = torch.arange(c)
        far = (pos[:, None] - pos[None, :]).abs() >= REPETITION_MIN_LAG
        mask = far[None] & valid[:, None, :] & valid[:, :, None]
        if self.mode in ("chroma", "oracle"):
            score = sim / self.tau
        elif self.mode == "learned":
            score = (self.q(h1) @ self.k(h1).transpose(1, 2)) / 32 ** 0.5
        else:
            score = (self.q(h1) @ self.k(h1).transpose(1, 2)) / 32 ** 0.5 + self.w_sim * sim
        ms, weights = [], []
        if self.parts == "all":
            masks = [mask]
        else:
            earlier = pos[None, :] < pos[:, None]
            masks = [mask & earlier[None], mask & ~earlier[None]]
        for mk in masks:
            a = torch.softmax(score.masked_fill(~mk, -1e9), dim=2) * mk.any(2, keepdim=True)
            ms.append(a @ h1)
        has = mask.any(2, keepdim=True).to(h1.dtype)
        z = self.drop(torch.cat([h1, *ms, has], dim=2))
        h2 = _bilstm(self.lstm2, z, lengths)
        u = _mask(self.att(h2).squeeze(2), lengths)
        a = torch.softmax(u, dim=1)
        o = torch.sigmoid(net.fc(cnn))
        y = torch.einsum("bc,bcl->bl", a, o)
        return {"logits": u, "y": y, "sections": self.sec(h2)}


V2 = "models/assets/hookstream-chorus-pop909-v2.safetensors"  # the CNN the bench's vectors come from


def shipped_config() -> nets.ModelConfig:
    """v2's architecture: every head here starts from its recurrent half's shape."""
    return ckpts.load(V2).model


def build_head(variant: str, *, emb_dim: int, n_labels: int) -> nn.Module:
    cfg = shipped_config()
    name, _, opts = variant.partition(":")
    kw = {}
    for part in filter(None, opts.split(",")):
        k, _, v = part.partition("=")
        kw[k] = type_of(v)
    if name == "base":
        return Base(cfg)
    if name == "shipped":  # v2's own weights, untrained further (a check of the bench)
        head = Base(cfg)
        sd = {k: v for k, v in ckpts.load(V2).state_dict.items() if not k.startswith("conv.")}
        head.net.load_state_dict(sd, strict=False)
        return head
    if name == "prop":
        return Prop(cfg, **kw)
    if name == "propfine3":
        return PropFine3(cfg, **kw)
    if name == "propfine2":
        return PropFine2(cfg, **kw)
    if name == "propfine":
        return PropFine(cfg, **kw)
    if name == "struct3":
        return Struct3(cfg, **kw)
    if name == "struct2":
        return Struct2(cfg, **kw)
    if name == "struct":
        return Struct(cfg, **kw)
    raise SystemExit(f"unknown variant {variant}")


def type_of(v: str):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def order_features(aff: Tensor, valid: Tensor, melodic: Tensor) -> Tensor:
    """Where each chunk's material was first heard, and how many materials came before it.

    ``aff`` (B, C, C) in [0, 1]: the probability that chunks i and j hold the same material
    (the diagonal is taken as 1); ``melodic`` (B, C) in [0, 1]. Returns (B, C, 4): the first
    occurrence of i's material (fraction of the track), the chance that i starts new material
    (nothing earlier matches it), the expected number of new melodic materials begun before
    the first occurrence of i's material, and the same unweighted by melody.
    """
    b, c, _ = aff.shape
    eye = torch.eye(c, dtype=torch.bool)[None]
    m = valid[:, :, None] & valid[:, None, :]
    a = torch.where(eye, torch.ones_like(aff), aff) * m
    log_not = torch.log1p(-a.clamp(max=1 - 1e-6))
    before = torch.cumsum(log_not, dim=2) - log_not  # sum over k < j of log(1 - a_ik)
    p_first = a * torch.exp(before)  # P(first match of i is j)
    p_first = p_first * torch.tril(torch.ones(c, c, dtype=torch.bool))[None]  # j <= i
    p_first = p_first / p_first.sum(2, keepdim=True).clamp(min=1e-6)
    pos = torch.arange(c, dtype=aff.dtype)
    n = valid.sum(1, keepdim=True).clamp(min=2).to(aff.dtype)
    first = (p_first * pos[None, None]).sum(2) / (n - 1)
    novel = torch.exp(torch.diagonal(before, dim1=1, dim2=2)) * valid  # P(nothing before j matches j)
    count_mel = torch.cumsum(novel * melodic, 1) - novel * melodic  # new melodic materials before j
    count_all = torch.cumsum(novel, 1) - novel
    rank_mel = (p_first * count_mel[:, None, :]).sum(2)
    rank_all = (p_first * count_all[:, None, :]).sum(2)
    return torch.stack([first, novel, rank_mel, rank_all], 2) * valid[..., None]


class Struct(nn.Module):
    """BiLSTM -> material affinity (learned + fine chroma path similarity, trained on the
    annotated phrase letters) -> order features + propagated states -> BiLSTM -> chorus."""

    def __init__(self, cfg: nets.ModelConfig, mode: str = "learned", hidden2: int = 64,
                 pair_weight: float = 1.0, dim: int = 32, prop: int = 1, fine: int = 1):
        super().__init__()
        self.base = Base(cfg)
        h = cfg.lstm_hidden
        self.mode, self.pair_weight, self.prop, self.fine = mode, pair_weight, prop, fine
        self.g = nn.Linear(2 * h, dim)
        self.pair = nn.Linear(3, 1)  # [cos(g_i, g_j), fine sim, coarse sim] -> affinity logit
        self.mel = nn.Linear(2 * h, 1)
        n_in = 2 * h * (2 if prop else 1) + 4
        self.lstm2 = nn.LSTM(n_in, hidden2, batch_first=True, bidirectional=True)
        self.att = nn.Sequential(nn.Linear(2 * hidden2, 64), nn.Tanh(), nn.Linear(64, 1))
        self.sec = nn.Linear(2 * hidden2, cfg.n_sections)

    def forward(self, emb, chroma, lengths, letters=None, fine=None):
        net = self.base.net
        x, cnn, _ = net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        h1 = _bilstm(net.lstm, x, lengths)
        coarse, valid = phrase_similarity(chroma, lengths)
        fsim = fine[:, 0] if (fine is not None and self.fine) else torch.zeros_like(coarse)
        g = nn.functional.normalize(self.g(h1), dim=2)
        cos = g @ g.transpose(1, 2)
        logit = self.pair(torch.stack([cos, fsim, coarse], 3)).squeeze(3)
        same = None
        if letters is not None:
            same = ((letters[:, :, None] == letters[:, None, :]) & (letters[:, :, None] >= 0)).float()
        aff = same if self.mode == "oracle" else torch.sigmoid(logit)
        m = valid[:, :, None] & valid[:, None, :]
        melodic = torch.sigmoid(self.mel(h1)).squeeze(2)
        order = order_features(aff, valid, melodic)
        parts = [h1]
        if self.prop:
            w = aff * m
            parts.append((w @ h1) / w.sum(2, keepdim=True).clamp(min=1e-6))
        z = torch.cat(parts + [order], 2)
        h2 = _bilstm(self.lstm2, z, lengths)
        u = _mask(self.att(h2).squeeze(2), lengths)
        a = torch.softmax(u, dim=1)
        y = torch.einsum("bc,bcl->bl", a, torch.sigmoid(net.fc(cnn)))
        out = {"logits": u, "y": y, "sections": self.sec(h2), "pair_logit": logit}
        if same is not None and self.training:
            known = m & (letters[:, :, None] >= 0) & (letters[:, None, :] >= 0)
            pair_loss = nn.functional.binary_cross_entropy_with_logits(logit[known], same[known])
            mel_t = ((letters >= ord("A")) & (letters <= ord("Z"))).float()
            mel_loss = nn.functional.binary_cross_entropy_with_logits(
                self.mel(h1).squeeze(2)[valid & (letters >= 0)], mel_t[valid & (letters >= 0)])
            out["extra_loss"] = self.pair_weight * (pair_loss + mel_loss)
        return out


class PairNet(nn.Module):
    """A 2-D CNN over a track's pair maps (C, C) -> same-material logits (C, C), symmetric."""

    def __init__(self, n_in: int, width: int = 16, dilations=(1, 2, 4, 8), k: int = 3):
        super().__init__()
        layers, ch = [], n_in
        for d in dilations:
            layers += [nn.Conv2d(ch, width, k, padding=d * (k // 2), dilation=d), nn.ReLU()]
            ch = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch + n_in, 1, 1)

    def forward(self, maps: Tensor) -> Tensor:
        z = self.out(torch.cat([self.body(maps), maps], 1)).squeeze(1)
        return (z + z.transpose(1, 2)) / 2


class Struct2(nn.Module):
    """Struct with the affinity from a 2-D CNN over [cos(g), fine sims, coarse sim] maps."""

    def __init__(self, cfg: nets.ModelConfig, hidden2: int = 64, pair_weight: float = 1.0,
                 dim: int = 32, width: int = 16, n_maps: int = 1, prop: int = 1, mode: str = "learned",
                 nd: int = 4):
        super().__init__()
        self.base = Base(cfg)
        h = cfg.lstm_hidden
        self.pair_weight, self.prop, self.n_maps, self.mode = pair_weight, prop, n_maps, mode
        self.g = nn.Linear(2 * h, dim)
        self.pairnet = PairNet(2 + n_maps, width, dilations=(1, 2, 4, 8, 16)[:nd])
        self.mel = nn.Linear(2 * h, 1)
        n_in = 2 * h * (2 if prop else 1) + 4
        self.lstm2 = nn.LSTM(n_in, hidden2, batch_first=True, bidirectional=True)
        self.att = nn.Sequential(nn.Linear(2 * hidden2, 64), nn.Tanh(), nn.Linear(64, 1))
        self.sec = nn.Linear(2 * hidden2, cfg.n_sections)

    def front(self, emb, chroma, lengths, letters, maps):
        """First Bi-LSTM, pair logits from the 2-D CNN, same-letter targets (or None)."""
        net = self.base.net
        x, cnn, _ = net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        h1 = _bilstm(net.lstm, x, lengths)
        coarse, valid = phrase_similarity(chroma, lengths)
        m = valid[:, :, None] & valid[:, None, :]
        g = nn.functional.normalize(self.g(h1), dim=2)
        cos = g @ g.transpose(1, 2)
        stack = torch.cat([cos[:, None], coarse[:, None], maps[:, :self.n_maps]], 1) * m[:, None]
        same = None
        if letters is not None:
            same = ((letters[:, :, None] == letters[:, None, :]) & (letters[:, :, None] >= 0)).float()
        return h1, cnn, valid, m, self.pairnet(stack), same

    def back(self, h1, cnn, lengths, parts, order, logit, same, mel_logit, letters, valid, m):
        """Second Bi-LSTM over [parts, order features] -> chorus logits, labels, the pair loss."""
        net = self.base.net
        h2 = _bilstm(self.lstm2, torch.cat(parts + [order], 2), lengths)
        u = _mask(self.att(h2).squeeze(2), lengths)
        a = torch.softmax(u, dim=1)
        y = torch.einsum("bc,bcl->bl", a, torch.sigmoid(net.fc(cnn)))
        out = {"logits": u, "y": y, "sections": self.sec(h2), "pair_logit": logit}
        if same is not None and self.training:
            known = m & (letters[:, :, None] >= 0) & (letters[:, None, :] >= 0)
            pair_loss = nn.functional.binary_cross_entropy_with_logits(logit[known], same[known])
            mel_t = ((letters >= ord("A")) & (letters <= ord("Z"))).float()
            k1 = valid & (letters >= 0)
            mel_loss = nn.functional.binary_cross_entropy_with_logits(mel_logit[k1], mel_t[k1])
            out["extra_loss"] = self.pair_weight * (pair_loss + mel_loss)
        return out

    def forward(self, emb, chroma, lengths, letters=None, maps=None):
        h1, cnn, valid, m, logit, same = self.front(emb, chroma, lengths, letters, maps)
        aff = same if self.mode == "oracle" else torch.sigmoid(logit)
        mel_logit = self.mel(h1).squeeze(2)
        order = order_features(aff, valid, torch.sigmoid(mel_logit))
        parts = [h1]
        if self.prop:
            w = aff * m
            parts.append((w @ h1) / w.sum(2, keepdim=True).clamp(min=1e-6))
        return self.back(h1, cnn, lengths, parts, order, logit, same, mel_logit, letters, valid, m)


def hard_order_features(p: Tensor, valid: Tensor, melodic: Tensor) -> Tensor:
    """:func:`order_features` from a thresholded affinity (no gradient): (B, C, 6).

    first occurrence (fraction), starts new material, new melodic materials begun before the
    first occurrence, the same for all materials, share of the track holding this material,
    and the first occurrence's distance (fraction) after the first melodic onset.
    """
    b, c, _ = p.shape
    eye = torch.eye(c, dtype=torch.bool)[None]
    m = valid[:, :, None] & valid[:, None, :]
    a = ((p > 0.5) | eye) & m
    pos = torch.arange(c)
    first = a.float().argmax(dim=2)  # first True per row (the diagonal at the latest)
    onset = (first == pos[None]) & valid
    mel = (melodic > 0.5) & valid
    cm = torch.cumsum((onset & mel).float(), 1)
    ca = torch.cumsum(onset.float(), 1)
    take = lambda cum: torch.gather(cum, 1, first) - torch.gather((onset & mel).float() if cum is cm else onset.float(), 1, first)  # noqa: E731
    rank_mel = take(cm)
    rank_all = take(ca)
    n = valid.sum(1, keepdim=True).clamp(min=2).float()
    share = a.float().sum(2) / n
    first_mel = torch.where(mel.any(1), mel.float().argmax(1), torch.zeros(b, dtype=torch.long))
    since = (first - first_mel[:, None]).float() / n
    f = torch.stack([first.float() / (n - 1), onset.float(), rank_mel, rank_all, share, since], 2)
    return f * valid[..., None]


class Struct3(Struct2):
    """Struct2 with hard (thresholded, detached) order features and optional teacher forcing."""

    def __init__(self, cfg, tf: float = 0.0, **kw):
        super().__init__(cfg, **kw)
        h = cfg.lstm_hidden
        self.tf = tf
        n_in = 2 * h * (2 if self.prop else 1) + 6
        hidden2 = self.lstm2.hidden_size
        self.lstm2 = nn.LSTM(n_in, hidden2, batch_first=True, bidirectional=True)

    def forward(self, emb, chroma, lengths, letters=None, maps=None):
        h1, cnn, valid, m, logit, same = self.front(emb, chroma, lengths, letters, maps)
        p = torch.sigmoid(logit).detach()
        mel_logit = self.mel(h1).squeeze(2)
        melodic = torch.sigmoid(mel_logit).detach()
        if self.mode == "oracle" or (self.training and same is not None and self.tf > 0
                                     and torch.rand(()) < self.tf):
            p = same
            melodic = ((letters >= ord("A")) & (letters <= ord("Z"))).float()
        order = hard_order_features(p, valid, melodic)
        parts = [h1]
        if self.prop:
            w = (p > 0.5).float() * m
            parts.append((w @ h1) / w.sum(2, keepdim=True).clamp(min=1e-6))
        return self.back(h1, cnn, lengths, parts, order, logit, same, mel_logit, letters, valid, m)


class PropFine(nn.Module):
    """BiLSTM -> states gathered from the chunks whose fine phrase similarity matches (earlier,
    later, and the earliest match) -> BiLSTM -> chorus logits."""

    def __init__(self, cfg, hidden2: int = 64, theta: float = 0.5, k: float = 20.0,
                 early: float = 5.0, min_lag: int = 4, which: str = "pfe", drop: float = 0.0):
        super().__init__()
        self.base = Base(cfg)
        h = cfg.lstm_hidden
        self.theta = nn.Parameter(torch.tensor(theta))
        self.k, self.early, self.min_lag, self.which = k, early, min_lag, which
        self.drop = nn.Dropout(drop)
        n_in = 2 * h * (1 + len(which)) + 2
        self.lstm2 = nn.LSTM(n_in, hidden2, batch_first=True, bidirectional=True)
        self.att = nn.Sequential(nn.Linear(2 * hidden2, 64), nn.Tanh(), nn.Linear(64, 1))
        self.sec = nn.Linear(2 * hidden2, cfg.n_sections)

    def forward(self, emb, chroma, lengths, letters=None, maps=None):
        net = self.base.net
        x, cnn, _ = net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        h1 = _bilstm(net.lstm, x, lengths)
        fsim = maps[:, 0]
        b, c, _ = fsim.shape
        pos = torch.arange(c)
        valid = pos[None] < lengths[:, None]
        m = valid[:, :, None] & valid[:, None, :]
        lag = pos[:, None] - pos[None, :]  # i - j
        past = m & (lag >= self.min_lag)[None]
        fut = m & (lag <= -self.min_lag)[None]
        w = torch.sigmoid(self.k * (fsim - self.theta))
        parts, extra = [h1], []
        for key, mk, bias in (("p", past, None), ("f", fut, None), ("e", past, "early")):
            if key not in self.which:
                continue
            wk = w * mk
            if bias:
                wk = wk * torch.exp(-self.early * pos.float() / c)[None, None]
            parts.append((wk @ h1) / (wk.sum(2, keepdim=True) + 1e-3))
        extra = [fsim.masked_fill(~past, -1).amax(2).clamp(min=0),
                 fsim.masked_fill(~fut, -1).amax(2).clamp(min=0)]
        z = self.drop(torch.cat(parts + [torch.stack(extra, 2)], 2))
        h2 = _bilstm(self.lstm2, z, lengths)
        u = _mask(self.att(h2).squeeze(2), lengths)
        a = torch.softmax(u, dim=1)
        y = torch.einsum("bc,bcl->bl", a, torch.sigmoid(net.fc(cnn)))
        return {"logits": u, "y": y, "sections": self.sec(h2)}


def fine_features(fsim: Tensor, valid: Tensor, theta: float = 0.5, min_lag: int = 4) -> Tensor:
    """Per chunk from the fine phrase similarity: best earlier / later match, where its phrase
    was first heard (fraction of the track), and whether it was heard before: (B, C, 4)."""
    b, c, _ = fsim.shape
    pos = torch.arange(c)
    m = valid[:, :, None] & valid[:, None, :]
    lag = pos[:, None] - pos[None, :]
    past = m & (lag >= min_lag)[None]
    fut = m & (lag <= -min_lag)[None]
    best_past = fsim.masked_fill(~past, -1).amax(2).clamp(min=0)
    best_fut = fsim.masked_fill(~fut, -1).amax(2).clamp(min=0)
    hit = past & (fsim > theta)
    first = torch.where(hit.any(2), hit.float().argmax(2), pos[None].expand(b, c))
    n = valid.sum(1, keepdim=True).clamp(min=2).float()
    heard = hit.any(2).float()
    return torch.stack([best_past, best_fut, first.float() / (n - 1), heard], 2) * valid[..., None]


class PropFine2(nn.Module):
    """PropFine with fine-similarity features into the first BiLSTM and a section head on it."""

    def __init__(self, cfg, hidden2: int = 64, theta: float = 0.5, k: float = 20.0,
                 early: float = 5.0, min_lag: int = 4, drop: float = 0.3, sec1: float = 0.5,
                 hidden1: int = 0, prop: int = 1):
        super().__init__()
        self.base = Base(cfg)
        h = hidden1 or cfg.lstm_hidden
        n1 = self.base.net.lstm.input_size + 4
        self.lstm1 = nn.LSTM(n1, h, batch_first=True, bidirectional=True)
        self.sec1 = nn.Linear(2 * h, cfg.n_sections)
        self.sec1_w = sec1
        self.prop = prop
        self.theta = nn.Parameter(torch.tensor(theta))
        self.k, self.early, self.min_lag = k, early, min_lag
        self.drop = nn.Dropout(drop)
        self.lstm2 = nn.LSTM(2 * h * (4 if prop else 1) + 4, hidden2, batch_first=True, bidirectional=True)
        self.att = nn.Sequential(nn.Linear(2 * hidden2, 64), nn.Tanh(), nn.Linear(64, 1))
        self.sec = nn.Linear(2 * hidden2, cfg.n_sections)

    def links(self, h1, fsim, lengths):
        """[h1, states gathered from earlier / later / earliest matching phrases]."""
        b, c, _ = fsim.shape
        pos = torch.arange(c)
        valid = pos[None] < lengths[:, None]
        m = valid[:, :, None] & valid[:, None, :]
        lag = pos[:, None] - pos[None, :]
        past = m & (lag >= self.min_lag)[None]
        fut = m & (lag <= -self.min_lag)[None]
        w = torch.sigmoid(self.k * (fsim - self.theta))
        parts = [h1]
        for mk, early in ((past, False), (fut, False), (past, True)) if self.prop else ():
            wk = w * mk
            if early:
                wk = wk * torch.exp(-self.early * pos.float() / c)[None, None]
            parts.append((wk @ h1) / (wk.sum(2, keepdim=True) + 1e-3))
        return parts

    def finish(self, h2, cnn, lengths, s1):
        net = self.base.net
        u = _mask(self.att(h2).squeeze(2), lengths)
        a = torch.softmax(u, dim=1)
        y = torch.einsum("bc,bcl->bl", a, torch.sigmoid(net.fc(cnn)))
        out = {"logits": u, "y": y, "sections": self.sec(h2)}
        if self.training and self.sec1_w:
            out["sections1"] = s1
        return out

    def forward(self, emb, chroma, lengths, letters=None, maps=None):
        x, cnn, _ = self.base.net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        fsim = maps[:, 0]
        valid = torch.arange(fsim.shape[1])[None] < lengths[:, None]
        ff = fine_features(fsim, valid, min_lag=self.min_lag)
        h1 = _bilstm(self.lstm1, self.drop(torch.cat([x, ff], 2)), lengths)
        h2 = _bilstm(self.lstm2, self.drop(torch.cat(self.links(h1, fsim, lengths) + [ff], 2)),
                     lengths)
        return self.finish(h2, cnn, lengths, self.sec1(h1))


class PropFine3(PropFine2):
    """PropFine2 + where a chunk's phrase was first heard relative to the earliest first hearing
    among the chunks the first section head finds chorus-like (B or later material)."""

    def __init__(self, cfg, theta_ff: float = 0.65, **kw):
        super().__init__(cfg, **kw)
        self.theta_ff = theta_ff
        h = self.lstm1.hidden_size
        hidden2 = self.lstm2.hidden_size
        self.lstm2 = nn.LSTM(2 * h * (4 if self.prop else 1) + 4 + 3, hidden2, batch_first=True,
                             bidirectional=True)

    def forward(self, emb, chroma, lengths, letters=None, maps=None):
        x, cnn, _ = self.base.net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        fsim = maps[:, 0]
        c = fsim.shape[1]
        valid = torch.arange(c)[None] < lengths[:, None]
        ff = fine_features(fsim, valid, theta=self.theta_ff, min_lag=self.min_lag)
        h1 = _bilstm(self.lstm1, self.drop(torch.cat([x, ff], 2)), lengths)
        s1 = self.sec1(h1)
        q = torch.softmax(s1.detach(), 2)[..., 2:].sum(2) * valid  # P(B) + P(later)
        first = ff[..., 2]
        ch = (q > 0.5) & valid
        earliest = torch.where(ch, first, torch.full_like(first, 2.0)).amin(1, keepdim=True)
        earliest = torch.where(ch.any(1, keepdim=True), earliest, torch.zeros_like(earliest))
        rel = torch.stack([first - earliest, ((first - earliest).abs() < 2.5 / c).float(), q], 2)
        z = torch.cat(self.links(h1, fsim, lengths) + [ff, rel * valid[..., None]], 2)
        return self.finish(_bilstm(self.lstm2, self.drop(z), lengths), cnn, lengths, s1)
