"""Post-processing variants of the default chorus model's window, measured on a validation split.

    python scripts/sweep_postprocess.py --split val data/val-fluid/manifest.jsonl data/val-timgm/manifest.jsonl

Scores every annotated song of each manifest once with the shipped model (as
``hookstream detect`` does), keeps its final chunk chorusness, chunk chroma
(the chunk vectors' last ``n_chroma`` values), section-head probabilities and
slot energy, then re-runs only the 30 s window for each variant and prints
c50 / precision per manifest. Variants (docs/evaluation.md, "Post-processing
the chorusness window"):

- ``secB^a``: chorusness * P(section = B)^a (the training-only section head);
- ``rep<feature>^a``: chorusness * repetition feature^a (``models.nets.repetition_features``
  on the chunk chroma: best match, top-3 mean, best future match, first_seen);
- ``smooth<w>``: chorusness averaged over ``w`` chunks;
- ``rerank k l t``: the top ``k`` non-overlapping windows, each scored by its mean
  chorusness * (1 + l * number of other candidates holding a phrase with chroma
  similarity >= t);
- ``runstart``: chorusness damped with the distance from the start of its
  high-chorusness run (prefer the first, B, part of a B+C block);
- ``snap s<S> tol<t> w<W>``: boundary snapping: among the window starts within
  ``S`` slots of the best one whose window sum is within ``t`` (relative) of the
  best, the one with the largest energy rise (mean slot energy of the ``W`` slots
  after it minus the ``W`` before).

Nothing here is used by detection; it is the record of what was tried.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from models import nets
from models.audio import decode
from models.config import WindowConfig
from models.detect import Detector
from models.evaluation.metrics import coverage
from models.training.manifest import load_manifest
from models.window import select, select_top, slot_attention


def song_curves(det: Detector, song) -> dict:
    sc = det.scorer
    samples = decode(song.audio, sr=det.ckpt.mel.sample_rate, max_duration_s=sc.cfg.max_duration_s)
    state = sc.step([(sc.init_state(song.id), samples)], refresh=[False])[0]
    scores = sc.finalize([state])[0]
    emb = sc._with_tail(sc._flush([state])[0]).embeddings  # the chunk vectors finalize attends over
    with torch.inference_mode():
        _, _, hidden = sc.net.attend_all(torch.from_numpy(emb[None]), torch.tensor([len(emb)]))
        sections = torch.softmax(sc.net.section_logits(hidden), -1)[0].numpy().astype(np.float64)
    chroma = emb[:, -sc.n_chroma:].astype(np.float32)
    rep = nets.repetition_features(torch.from_numpy(chroma[None]), torch.tensor([len(chroma)]))
    return {"chorus": song.chorus, "duration": scores.duration_s,
            "chorusness": np.asarray(scores.chorusness, np.float64),
            "chunk_lengths": np.asarray(scores.chunk_lengths), "sections": sections,
            "energy": np.asarray(scores.slot_energy, np.float64), "sim": phrase_similarity(chroma),
            "rep": rep[0].numpy().astype(np.float64)}


def phrase_similarity(chroma: np.ndarray) -> np.ndarray:
    """Cosine similarity of centred chroma stacked over ``nets.REPETITION_SPAN`` (as the model's features)."""
    x = chroma - chroma.mean(0)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
    c = len(x)
    parts = []
    for off in nets.REPETITION_SPAN:
        src = np.arange(c) + off
        ok = (src >= 0) & (src < c)
        shifted = np.zeros_like(x)
        shifted[ok] = x[src[ok]]
        parts.append(shifted)
    v = np.concatenate(parts, 1)
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-6)
    return v @ v.T


def run_position(ch: np.ndarray, thr: float) -> np.ndarray:
    """Chunks since the start of the run of chorusness >= thr holding each chunk (0 outside runs)."""
    out, count = np.zeros(len(ch)), 0
    for i, v in enumerate(ch):
        count = count + 1 if v >= thr else 0
        out[i] = max(count - 1, 0)
    return out


def rerank(k: int, lam: float, thr: float, chunk_s: float):
    def choose(r, att, cfg, slot_s):
        hs = select_top(att, r["energy"], slot_s=slot_s, duration_s=r["duration"], cfg=cfg, k=k)
        sim = r["sim"]

        def chunks(h):
            return np.arange(int(h.start_s // chunk_s), min(len(sim), int(np.ceil(h.end_s / chunk_s))))
        best, value = hs[0], -np.inf
        for h in hs:
            n = sum(1 for o in hs if o is not h and len(chunks(h)) and len(chunks(o))
                    and sim[np.ix_(chunks(h), chunks(o))].max() >= thr)
            if h.score * (1 + lam * n) > value + 1e-9:
                best, value = h, h.score * (1 + lam * n)
        return best
    return choose


def snap(span: int, tol: float, w: int):
    def choose(r, att, cfg, slot_s):
        h = select(att, r["energy"], slot_s=slot_s, duration_s=r["duration"], cfg=cfg)
        width = int(round(cfg.length_s / slot_s))
        n = len(att)
        if n <= width:
            return h
        sums = np.convolve(att, np.ones(width), "valid")  # window sum per start slot
        i0 = int(round(h.start_s / slot_s))
        i0 = min(max(i0, 0), len(sums) - 1)
        e = np.pad(np.asarray(r["energy"], np.float64), (w, w), mode="edge")
        best, rise = i0, -np.inf
        for j in range(max(0, i0 - span), min(len(sums), i0 + span + 1)):
            if sums[j] < sums[i0] * (1 - tol) - 1e-12:
                continue
            v = e[j + w:j + 2 * w].mean() - e[j:j + w].mean()  # after minus before (padded)
            if v > rise:
                best, rise = j, v
        start = best * slot_s
        end = min(start + cfg.length_s, r["duration"])
        return type(h)(round(max(0.0, end - cfg.length_s), 3), round(end, 3), h.score)
    return choose


def variants(chunk_s: float) -> dict:
    ch = lambda r: r["chorusness"]  # noqa: E731
    out = {"base": (ch, None)}
    for a in (0.25, 0.5, 1.0, 2.0):
        out[f"secB^{a}"] = ((lambda a: lambda r: r["chorusness"] * r["sections"][:, 2] ** a)(a), None)
        for j, name in ((0, "best"), (1, "top3"), (5, "future")):
            out[f"rep{name}^{a}"] = ((lambda a, j: lambda r: r["chorusness"]
                                      * np.clip(r["rep"][:, j], 0, None) ** a)(a, j), None)
        out[f"first_seen^{a}"] = ((lambda a: lambda r: r["chorusness"]
                                   * np.clip(1 - r["rep"][:, 6], 0, 1) ** a)(a), None)
    for w in (3, 5):
        out[f"smooth{w}"] = ((lambda w: lambda r: np.convolve(
            np.pad(r["chorusness"], (w // 2, w - 1 - w // 2), mode="edge"), np.ones(w) / w, "valid"))(w), None)
    for k in (3, 5):
        for lam in (0.1, 0.5):
            for thr in (0.5, 0.7):
                out[f"rerank k{k} l{lam} t{thr}"] = (ch, rerank(k, lam, thr, chunk_s))
    for thr in (0.5, 0.7):
        for tau in (8, 16):
            out[f"runstart t{thr} tau{tau}"] = ((lambda thr, tau: lambda r: r["chorusness"] * (
                0.5 + 0.5 * np.exp(-run_position(r["chorusness"], thr) / tau)))(thr, tau), None)
    for span in (5, 10):
        for tol in (0.0, 0.02, 0.05):
            for w in (5, 10):
                out[f"snap s{span} tol{tol} w{w}"] = (ch, snap(span, tol, w))
    return out


def measure(recs, curve_fn, choose, det: Detector) -> tuple[float, float]:
    sc = det.scorer
    cfg = det.cfg.window
    per_song = []
    for r in recs:
        att = slot_attention(curve_fn(r), r["chunk_lengths"], sc.cfg.slot_frames, len(r["energy"]),
                             sc.cfg.chunk_frames)
        h = (select(att, r["energy"], slot_s=sc.slot_seconds, duration_s=r["duration"], cfg=cfg)
             if choose is None else choose(r, att, cfg, sc.slot_seconds))
        per_song.append(coverage((h.start_s, h.end_s), r["chorus"]))
    return (float(np.mean([m["c50"] for m in per_song])),
            float(np.mean([m["precision"] for m in per_song])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("--split", default="val")
    p.add_argument("--only", default="", help="only the variants whose name starts with this "
                   "(and base)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)  # the scorer's tail embedding reads tensors as numpy
    det = Detector()
    assert isinstance(det.cfg.window, WindowConfig)
    chunk_s = det.scorer.cfg.chunk_frames * det.ckpt.mel.frame_seconds
    renders = []
    for path in args.manifests:
        songs = [s for s in load_manifest(path) if s.chorus and s.split == args.split]
        renders.append([song_curves(det, s) for s in songs])
    print("variant".ljust(26) + "".join(f"{'c50':>8}{'prec':>7}" for _ in renders) + "   mean")
    for name, (curve_fn, choose) in variants(chunk_s).items():
        if args.only and name != "base" and not name.startswith(args.only):
            continue
        vals = [measure(recs, curve_fn, choose, det) for recs in renders]
        mean = np.mean([(c + q) / 2 for c, q in vals])
        print(name.ljust(26) + "".join(f"{c:8.3f}{q:7.3f}" for c, q in vals) + f"   {mean:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
