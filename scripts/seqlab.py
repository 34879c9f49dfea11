"""A fast bench for the recurrent half of the chorus model: frozen CNN embeddings, many heads.

    python scripts/seqlab.py extract --checkpoint models/assets/hookstream-chorus-pop909-v2.safetensors \
        --config configs/train/chorus-pop909-v2.yaml --out data/seqlab/full.pt --extra-val data/val-timgm/manifest.jsonl
    python scripts/seqlab.py train --data data/seqlab/emb.pt --variant base --epochs 30
    python scripts/seqlab.py train --data data/seqlab/full.pt --variant propfine2 \
        --crop 0.5 --prefix 0.5 0.75 --prefix-all   # prefix training, judged part-way too

``extract`` runs the checkpoint's CNN once over every training song at three
chunk-grid offsets (0, 1/3, 2/3 of a chunk; the last two at a random gain of
up to the config's ``gain_db``) and over every validation song whole, cut as
the streaming scorer cuts it; ``train`` then trains only the sequence part
(everything after ``embed``) on those vectors, so one epoch takes seconds
instead of minutes, and reports val c50 / precision per render with the
trainer's own :func:`models.training.train.chorus_metrics`.

Nothing here is used by detection or by ``hookstream train``: it is where
sequence-model variants were compared before one went into the trainer.
"""

from __future__ import annotations

import argparse
import math
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from models import checkpoint as ckpts
from models.config import ScorerConfig
from models.training import train as T

OFFSETS = (0, 43, 87)


def extract(args) -> None:
    ck = ckpts.load(args.checkpoint)
    net = ck.build()
    cfg = T.load_config(args.config)
    if args.extra_val:
        cfg = T.TrainConfig(**{**cfg.__dict__, "extra_manifests": cfg.extra_manifests
                               + tuple(args.extra_val)})
    data = T.prepare_data(cfg, min_frames=net.min_frames, stats=(ck.norm_mean, ck.norm_std),
                          chroma=True)
    cf = ScorerConfig().chunk_frames
    rng = np.random.default_rng(0)
    out = {"train": [], "val": [], "labels": data.labels}
    t0 = time.monotonic()
    with torch.inference_mode():
        for k, it in enumerate(data.train):
            views = []
            for j, off in enumerate(OFFSETS):
                take = (it.n_frames - off) // cf
                if take < 1:
                    continue
                gain = 0.0 if j == 0 else float(rng.uniform(-cfg.gain_db, cfg.gain_db))
                s = T.song_arrays(it, data, start=off, take=take,
                                  offset=gain * math.log(10.0) / 10.0)
                emb = net.embed(torch.from_numpy(s.full)).numpy().astype(np.float16)
                views.append({"emb": emb, "chroma": s.chroma, "target": s.target,
                              "fine": slot_chroma(it.chroma(), off, take * cf),
                              "section": s.section,
                              "letter": chunk_letters(it, off, take, cf)})
            out["train"].append({"id": it.id, "render": it.render, "y": it.target,
                                 "views": views})
            if k % 100 == 0:
                print(f"train {k}/{len(data.train)} {time.monotonic() - t0:.0f} s", flush=True)
        min_tail = max(ScorerConfig().min_tail_frames, net.min_frames)
        for it in data.val:
            s = T.whole_song_arrays(it, data, min_tail=min_tail)
            parts = [net.embed(torch.from_numpy(s.full))]
            if s.tail is not None:
                parts.append(net.embed(torch.from_numpy(s.tail[None])))
            emb = torch.cat(parts).numpy()
            n_slots = len(emb) * (cf // SLOT)
            out["val"].append({"id": it.id, "render": it.render, "y": it.target, "emb": emb,
                               "fine": slot_chroma(it.chroma(), 0, n_slots * SLOT),
                               "chroma": s.chroma, "target": s.target, "section": s.section,
                               "n_full": len(s.full),
                               "tail": None if s.tail is None else s.tail.shape[1],
                               "n_frames": it.n_frames, "chorus": it.chorus,
                               "letter": chunk_letters(it, 0, len(emb), cf)})
    torch.save(out, args.out)
    print(f"wrote {args.out}: {len(out['train'])} train, {len(out['val'])} val songs, "
          f"{time.monotonic() - t0:.0f} s")


CHUNK_S = 130 * 512 / 22050  # seconds per 130-frame chunk at the default mel settings
SLOT = 13  # frames per fine chroma step (the scorer's slot, 0.30 s)


def slot_chroma(chroma: np.ndarray, start: int, n_frames: int) -> np.ndarray:
    """Chroma frames from ``start`` averaged over slots of :data:`SLOT` frames (zero past the end)."""
    x = np.zeros((n_frames, chroma.shape[1]), np.float32)
    got = np.asarray(chroma[start:start + n_frames], np.float32)
    x[:len(got)] = got
    return x.reshape(-1, SLOT, chroma.shape[1]).mean(axis=1).astype(np.float16)


def chunk_letters(it, start: int, take: int, cf: int) -> np.ndarray:
    """Per chunk, the phrase label at its centre as a code (ord of the letter; -1: none)."""
    from models.config import MelConfig

    mel = MelConfig()
    centres = ((start + (np.arange(take) + 0.5) * cf) * mel.hop_length) / mel.sample_rate
    out = np.full(take, -1, np.int64)
    for label, a, b in it.sections:
        out[(centres >= a) & (centres < b)] = ord(label[0])
    return out


# ----------------------------------------------------------------------------- heads
def pad(seqs, dim_last=True):
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def prefix_view(s: dict, frac: float) -> dict | None:
    """The first ``frac`` of a validation song's chunks with its chorus cut there, as a
    provisional highlight over the whole track so far sees it (None: no chorus yet)."""
    cf = ScorerConfig().chunk_frames
    n = max(1, int(round(len(s["emb"]) * frac)))
    end_s = n * CHUNK_S
    chorus = [(a, min(b, end_s)) for a, b in s["chorus"] if a < end_s]
    if not chorus:
        return None
    v = {**s, "emb": s["emb"][:n], "chroma": s["chroma"][:n], "letter": s["letter"][:n],
         "fine": s["fine"][:n * 10], "n_full": n, "tail": None, "n_frames": n * cf,
         "chorus": chorus, "render": f"{s['render']}@{frac:g}"}
    v.pop("maps", None)
    return v


def crop(view: dict, rng, min_chunks: int = 20) -> dict:
    """A random prefix of a training view (at least ``min_chunks`` chunks), as the scorer's
    provisional contexts show a track to the network."""
    n = len(view["emb"])
    if n <= min_chunks:
        return view
    k = int(rng.integers(min_chunks, n + 1))
    out = {key: view[key][:k] for key in ("emb", "chroma", "target", "section", "letter")}
    out["fine"] = view["fine"][:k * 10]
    out["maps"] = pair_maps(view)[:, :k, :k]
    return out


def evaluate(head, songs, device="cpu"):
    head.eval()
    rows = {}
    with torch.no_grad():
        for i in range(0, len(songs), 32):
            batch = songs[i:i + 32]
            emb = pad([torch.from_numpy(np.asarray(s["emb"], np.float32)) for s in batch])
            chroma = pad([torch.from_numpy(np.asarray(s["chroma"], np.float32)) for s in batch])
            lengths = torch.tensor([len(s["emb"]) for s in batch])
            letters = pad([torch.from_numpy(s["letter"]) for s in batch])
            fine = pad_maps([pair_maps(s) for s in batch])
            out = head(emb, chroma, lengths, letters if head_uses_letters(head) else None, fine)
            u = out["logits"]
            if "pair_logit" in out:
                for j, s in enumerate(batch):
                    n = lengths[j].item()
                    let = s["letter"]
                    iu = np.triu_indices(n, 1)
                    ok = (let[iu[0]] >= 0) & (let[iu[1]] >= 0)
                    t = (let[iu[0]] == let[iu[1]])[ok]
                    if 0 < t.sum() < len(t):
                        from sklearn.metrics import roc_auc_score
                        pl = out["pair_logit"][j, :n, :n].numpy()[iu][ok]
                        rows.setdefault("pairAUC", []).append({"c50": roc_auc_score(t, pl), "precision": 0})
            for j, s in enumerate(batch):
                if not s["chorus"]:
                    continue
                n = lengths[j].item()
                song = SimpleNamespace(full=np.zeros(s["n_full"]),
                                       tail=None if s["tail"] is None else np.zeros((1, s["tail"])))
                item = SimpleNamespace(n_frames=s["n_frames"], chorus=s["chorus"])
                m = T.chorus_metrics(u[j, :n].numpy(), song, item)
                rows.setdefault(s["render"], []).append(m)
    res = {}
    for r, ms in rows.items():
        res[r] = (np.mean([m["c50"] for m in ms]), np.mean([m["precision"] for m in ms]), len(ms))
    return res


def pair_maps(view) -> torch.Tensor:
    """(1, C, C) fine phrase similarity of a view (models.nets.phrase_similarity; cached)."""
    if "maps" not in view:
        from models.nets import phrase_similarity

        fine = np.asarray(view["fine"], np.float32)  # (C * 10, 12) slot chroma
        c = len(view["emb"])
        x = torch.from_numpy(fine[: c * 10].reshape(1, c, -1))
        view["maps"] = phrase_similarity(x, torch.tensor([c]), 10)
    return view["maps"]


def pad_maps(maps) -> torch.Tensor:
    c = max(m.shape[1] for m in maps)
    out = torch.zeros(len(maps), maps[0].shape[0], c, c)
    for i, m in enumerate(maps):
        out[i, :, :m.shape[1], :m.shape[2]] = m
    return out


def head_uses_letters(head) -> bool:
    """Only an oracle head reads the annotated letters at validation."""
    return getattr(head, "mode", "") == "oracle"


def short(render: str) -> str:
    """``data/NAME/manifest.jsonl@0.5`` -> ``NAME[:14]@0.5``."""
    path, at, frac = render.partition("@")
    return (path.split("/")[-2] if "/" in path else path)[:14] + at + frac


def train_head(args) -> None:
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from seqheads import build_head

    torch.set_num_threads(args.threads)
    blob = torch.load(args.data, weights_only=False)
    train_songs = blob["train"]
    val = blob["val"]
    trainer_val = [s for s in val if "val-" not in s["render"]]
    prefixes = [v for f in args.prefix for v in (prefix_view(s, f) for s in val
                                                  if "val-" in s["render"] or args.prefix_all)
                 if v is not None]
    torch.manual_seed(args.seed)
    head = build_head(args.variant, emb_dim=train_songs[0]["views"][0]["emb"].shape[1],
                      n_labels=len(blob["labels"]))
    opt = torch.optim.Adam(head.parameters(), lr=args.lr, weight_decay=args.wd)
    rng = np.random.default_rng(args.seed)
    best, best_ep, history = -1, 0, []
    for ep in range(1, args.epochs + 1):
        head.train()
        t0 = time.monotonic()
        order = rng.permutation(len(train_songs))
        tot = 0.0
        for b in range(0, len(order), args.batch):
            items = [train_songs[i] for i in order[b:b + args.batch]]
            views = [it["views"][rng.integers(len(it["views"]))] for it in items]
            if args.crop:
                views = [crop(v, rng) if rng.random() < args.crop else v for v in views]
            emb = pad([torch.from_numpy(v["emb"].astype(np.float32)) for v in views])
            chroma = pad([torch.from_numpy(v["chroma"]) for v in views])
            lengths = torch.tensor([len(v["emb"]) for v in views])
            letters = pad([torch.from_numpy(v["letter"]) for v in views])
            fine = pad_maps([pair_maps(v) for v in views])
            out = head(emb, chroma, lengths, letters, fine)
            y = torch.from_numpy(np.stack([it["y"] for it in items]))
            loss = T.bce(out["y"], y)
            u = torch.cat([out["logits"][i, :lengths[i]] for i in range(len(views))])
            t = torch.cat([torch.from_numpy(np.asarray(v["target"])) for v in views])
            loss = loss + F.binary_cross_entropy_with_logits(u, t)
            if "sections" in out:
                z = torch.cat([out["sections"][i, :lengths[i]] for i in range(len(views))])
                s = torch.cat([torch.from_numpy(v["section"]) for v in views])
                loss = loss + args.section_weight * F.cross_entropy(z, s)
            if "sections1" in out:
                z = torch.cat([out["sections1"][i, :lengths[i]] for i in range(len(views))])
                s = torch.cat([torch.from_numpy(v["section"]) for v in views])
                loss = loss + head.sec1_w * F.cross_entropy(z, s)
            if "extra_loss" in out:
                loss = loss + out["extra_loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
            tot += loss.item() * len(items)
        res = evaluate(head, val)
        if args.prefix:
            res.update(evaluate(head, prefixes))
        tv = [m for r, m in res.items() if "val-" not in r and r != "pairAUC" and "@" not in r]
        c50 = sum(m[0] * m[2] for m in tv) / sum(m[2] for m in tv)
        prec = sum(m[1] * m[2] for m in tv) / sum(m[2] for m in tv)
        score = (c50 + prec) / 2
        star = ""
        if score > best:
            best, best_ep, star = score, ep, " *"
            if args.save:
                torch.save(head.state_dict(), args.save)
        per = " ".join(f"{short(r)} {m[0]:.3f}/{m[1]:.3f}"
                       for r, m in sorted(res.items()))
        print(f"ep {ep:2d} loss {tot / len(order):.4f} val {c50:.3f}/{prec:.3f} [{per}] "
              f"{time.monotonic() - t0:.0f}s{star}", flush=True)
        history.append(score)
        if ep - best_ep >= args.patience:
            break
    print(f"BEST {args.variant} seed {args.seed}: epoch {best_ep} score {best:.4f}")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--checkpoint", default="models/assets/hookstream-chorus-pop909-v2.safetensors")
    e.add_argument("--config", default="configs/train/chorus-pop909-v2.yaml")
    e.add_argument("--out", default="data/seqlab/emb.pt")
    e.add_argument("--extra-val", nargs="*", default=[])
    t = sub.add_parser("train")
    t.add_argument("--data", default="data/seqlab/emb.pt")
    t.add_argument("--variant", default="base")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--patience", type=int, default=8)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--wd", type=float, default=0.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--section-weight", type=float, default=0.5)
    t.add_argument("--save", default=None)
    t.add_argument("--crop", type=float, default=0.0,
                   help="share of training views cut to a random prefix (provisional contexts)")
    t.add_argument("--prefix", type=float, nargs="*", default=[],
                   help="also report val on the first FRAC of each song (the extra-val renders; "
                        "--prefix-all: every render)")
    t.add_argument("--prefix-all", action="store_true")
    args = p.parse_args()
    if args.cmd == "extract":
        from pathlib import Path
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        extract(args)
    else:
        train_head(args)


if __name__ == "__main__":
    main()
