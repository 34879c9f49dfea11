"""Lab: predicted section boundaries + fine-similarity clustering -> material order -> is-B.

    python scripts/seglab.py --data data/seqlab/full.pt --epochs 8
    python scripts/seglab.py --novelty      # does slot-chroma novelty mark the letter changes?

Trains a Bi-LSTM (frozen CNN embeddings in) with boundary, melody and section heads,
then on the validation songs cuts at the predicted boundaries, clusters the segments by
their fine phrase similarity in order of appearance and labels the melodic clusters by
order of first appearance; prints how often that finds the annotated B chunks.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from seqheads import Base, fine_features, shipped_config  # noqa: E402
from seqlab import pad, pad_maps, pair_maps  # noqa: E402
from models.nets import _bilstm  # noqa: E402

BAND = 8


def band(fsim: torch.Tensor) -> torch.Tensor:
    """(B, C, C) -> (B, C, 2 * BAND + 1): each chunk's similarity to its neighbours."""
    b, c, _ = fsim.shape
    p = F.pad(fsim, (BAND, BAND))
    idx = torch.arange(c)[:, None] + torch.arange(2 * BAND + 1)[None, :]
    return p[:, torch.arange(c)[:, None], idx]


class Seg(nn.Module):
    def __init__(self, hidden=128, drop=0.3):
        super().__init__()
        cfg = shipped_config()
        self.base = Base(cfg)
        n = self.base.net.lstm.input_size + 4 + 2 * BAND + 1
        self.lstm = nn.LSTM(n, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(drop)
        self.heads = nn.Linear(2 * hidden, 1 + 1 + 4 + 1)  # boundary, melodic, section(4), chorus

    def forward(self, emb, chroma, lengths, maps):
        x, _, _ = self.base.net.recurrent_inputs(torch.cat([emb, chroma], 2), lengths)
        fsim = maps[:, 0]
        valid = torch.arange(fsim.shape[1])[None] < lengths[:, None]
        z = torch.cat([x, fine_features(fsim, valid), band(fsim) * valid[..., None]], 2)
        h = _bilstm(self.lstm, self.drop(z), lengths)
        o = self.heads(h)
        return {"boundary": o[..., 0], "melodic": o[..., 1], "section": o[..., 2:6],
                "chorus": o[..., 6]}


def slot_novelty(fine: np.ndarray, chunks: int, half: int) -> np.ndarray:
    """Foote's checkerboard novelty on the slot chroma (Gaussian-tapered kernel of ``half``
    slots a side), its largest value per chunk: (chunks,)."""
    x = np.asarray(fine, np.float32)[: chunks * 10]
    x = x - x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
    ssm = np.pad(x @ x.T, half)
    k = np.ones((2 * half, 2 * half))
    k[:half, half:] = k[half:, :half] = -1
    g = np.exp(-((np.arange(2 * half) - half + 0.5) / (0.5 * half)) ** 2 / 2)
    k *= np.outer(g, g)
    nov = np.array([(ssm[t:t + 2 * half, t:t + 2 * half] * k).sum() for t in range(len(x))])
    return nov.reshape(chunks, 10).max(1)


def novelty_check(blob) -> None:
    """ROC AUC of the chunk novelty for the chunks at (or just before) a phrase-letter change."""
    from sklearn.metrics import roc_auc_score

    for half in (8, 16, 32):
        ys, ys_bc, scores = [], [], []
        for s in blob["val"]:
            if "val-" in s["render"]:
                continue
            let = s["letter"]
            nov = slot_novelty(s["fine"], len(let), half)
            change = np.r_[False, (let[1:] != let[:-1]) & (let[1:] >= 0) & (let[:-1] >= 0)]
            b_to_c = np.r_[False, (let[1:] == 67) & (let[:-1] == 66)]
            ys += list(change | np.r_[change[1:], False])
            ys_bc += list(b_to_c | np.r_[b_to_c[1:], False])
            scores += list(nov)
        print(f"kernel {half} slots a side: letter changes AUC {roc_auc_score(ys, scores):.3f}, "
              f"B -> C AUC {roc_auc_score(ys_bc, scores):.3f}")


def targets(letter):
    b = np.zeros(len(letter), np.float32)
    b[0] = 1
    b[1:] = letter[1:] != letter[:-1]
    mel = ((letter >= 65) & (letter <= 90)).astype(np.float32)
    return b, mel


def segments_from(bprob, th=0.5):
    n = len(bprob)
    cuts = [0] + [i for i in range(1, n) if bprob[i] > th and bprob[i] >= bprob[i - 1]
                  and (i + 1 >= n or bprob[i] >= bprob[i + 1])] + [n]
    cuts = sorted(set(cuts))
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def order_labels(segs, sim, mel_seg, th=0.5):
    k = len(segs)
    S = np.zeros((k, k))
    for a, (i0, i1) in enumerate(segs):
        for b, (j0, j1) in enumerate(segs):
            if a != b:
                S[a, b] = np.mean(sim[i0:i1, j0:j1].max(1))
    S = np.minimum(S, S.T)
    lab = []
    for a in range(k):
        cands = [b for b in range(a) if S[a, b] > th]
        lab.append(lab[cands[0]] if cands else a)
    order = []
    for a in range(k):
        if mel_seg[a] and lab[a] not in order:
            order.append(lab[a])
    rank = [order.index(lab[a]) + 1 if mel_seg[a] else 0 for a in range(k)]
    return rank


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/seqlab/full.pt")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--save", default="data/seqlab/seg.pt")
    p.add_argument("--load", default=None)
    p.add_argument("--th", type=float, default=0.5)
    p.add_argument("--sim-th", type=float, default=0.5)
    p.add_argument("--novelty", action="store_true", help="only the slot-chroma novelty check")
    args = p.parse_args()
    torch.set_num_threads(1)
    blob = torch.load(args.data, weights_only=False)
    if args.novelty:
        return novelty_check(blob)
    net = Seg()
    if args.load:
        net.load_state_dict(torch.load(args.load))
    else:
        opt = torch.optim.Adam(net.parameters(), lr=3e-4)
        rng = np.random.default_rng(0)
        train = blob["train"]
        for ep in range(args.epochs):
            net.train()
            t0, tot = time.monotonic(), 0.0
            order = rng.permutation(len(train))
            for s in range(0, len(order), 8):
                items = [train[i] for i in order[s:s + 8]]
                views = [it["views"][rng.integers(len(it["views"]))] for it in items]
                emb = pad([torch.from_numpy(v["emb"].astype(np.float32)) for v in views])
                chroma = pad([torch.from_numpy(v["chroma"]) for v in views])
                lengths = torch.tensor([len(v["emb"]) for v in views])
                out = net(emb, chroma, lengths, pad_maps([pair_maps(v) for v in views]))
                loss = 0.0
                for i, v in enumerate(views):
                    n = lengths[i]
                    known = torch.from_numpy(v["letter"] >= 0)
                    bt, mt = map(torch.from_numpy, targets(v["letter"]))
                    loss = loss + F.binary_cross_entropy_with_logits(out["boundary"][i, :n][known], bt[known])
                    loss = loss + F.binary_cross_entropy_with_logits(out["melodic"][i, :n][known], mt[known])
                    loss = loss + 0.5 * F.cross_entropy(out["section"][i, :n], torch.from_numpy(v["section"]))
                    loss = loss + F.binary_cross_entropy_with_logits(out["chorus"][i, :n], torch.from_numpy(v["target"]))
                loss = loss / len(views)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item()
            print(f"epoch {ep + 1} loss {tot / (len(order) / 8):.4f} {time.monotonic() - t0:.0f}s", flush=True)
            torch.save(net.state_dict(), args.save)
    net.eval()
    res = {}
    with torch.no_grad():
        for s in blob["val"]:
            n = len(s["emb"])
            out = net(torch.from_numpy(np.asarray(s["emb"], np.float32))[None],
                      torch.from_numpy(s["chroma"])[None], torch.tensor([n]), pad_maps([pair_maps(s)]))
            l = s["letter"]
            bt, mt = targets(l)
            bp = torch.sigmoid(out["boundary"][0]).numpy()
            mp = torch.sigmoid(out["melodic"][0]).numpy()
            segs = segments_from(bp, args.th)
            mel_seg = [mp[a:b].mean() > 0.5 for a, b in segs]
            rank = order_labels(segs, pair_maps(s)[0].numpy(), mel_seg, args.sim_th)
            res.setdefault("n segs pred/true", []).append(len(segs) / max(bt[l >= 0].sum(), 1))
            isb = np.zeros(n, bool)
            for (a, b), r in zip(segs, rank):
                isb[a:b] = r == 2
            ok = l >= 0
            r = s["render"].split("/")[-2][:12]
            res.setdefault(r + " isB acc", []).append((isb == (l == 66))[ok].mean())
            # boundary F1 within 1 chunk
            tb = set(np.flatnonzero(bt[ok] > 0)) if ok.all() else set(np.flatnonzero(bt > 0))
            pb = {a for a, _ in segs}
            hit_p = sum(any(abs(x - y) <= 1 for y in tb) for x in pb)
            hit_t = sum(any(abs(x - y) <= 1 for y in pb) for x in tb)
            prec, rec = hit_p / max(len(pb), 1), hit_t / max(len(tb), 1)
            res.setdefault("boundary F1", []).append(2 * prec * rec / max(prec + rec, 1e-9))
            res.setdefault("melodic acc", []).append(((mp > 0.5) == (mt > 0.5))[ok].mean())
    for k, v in sorted(res.items()):
        print(f"{k}: {np.mean(v):.3f}")


if __name__ == "__main__":
    main()
