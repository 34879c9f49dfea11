"""Post-processing variants of the default chorus model's window, measured on a validation split.

    python scripts/sweep_postprocess.py --split val data/val-fluid/manifest.jsonl data/val-timgm/manifest.jsonl
    ... --annotations ../shared/data/pop909/annotations.jsonl --only none   # the B/C analysis alone
    ... --cache /tmp/val.pkl --only firstBs   # score once, then re-run only the windows

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

- ``lead<s>`` / ``fwdmax<s>``: chunk ``i`` gets the chorusness of chunk ``i + s``, or the
  largest of chunks ``i .. i + s`` (the window moved earlier, onto the B that precedes a C);
- ``material k<k> rel<r> d<d>``: chunks clustered into ``k`` materials (McFee and Ellis's
  Laplacian segmentation: mutual-kNN recurrence of the phrase similarity plus the time
  path, spectral embedding, k-means); of the materials whose mean chorusness is at least
  ``r`` of the best one, the one heard first (its first run of 2 chunks) keeps its
  chorusness, the others are scaled by ``d``;
- ``afterA th<t> sm<w> tol<n>``: window starts only within ``n`` chunks of the end of a run
  of at least 2 chunks with section-head P(A) >= ``t`` (smoothed over ``w`` chunks): the
  chorus is the material that follows the verse.
- ``refPB th<t>`` / ``refafterA pa<p>`` / ``refearliest pa<p>``: the shipped first-chorus
  weight with its reference from the section head instead (see ``ref_from``);
  ``startref <n>``: the window started ``n`` chunks before the shipped reference;
- ``firstB th<t> s<n> a<a> f<f>`` / ``firstBs ...`` (chorusness smoothed over 3 chunks to find
  the reference): chorusness * (f + (1 - f) * match)^a, match = the fine phrase similarity
  (``nets.phrase_similarity`` on the model's slot chroma) to the ``n`` chunks from the first
  one whose chorusness reaches ``t`` of the track's largest; ``firstBs th0.6 s4 a2.0 f0.2``
  is the shipped ``window.first_chorus`` (``models/first_chorus.py``);
- ``contrast l<l> m<m> mean|max``: the window's mean chorusness minus ``l`` times the mean
  of the ``m`` slots just outside it (both sides' mean, or the larger side).

Nothing here is used by detection; it is the record of what was tried.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle

import numpy as np
import torch

from models import checkpoint as ckpts
from models import first_chorus, nets
from models.audio import decode
from models.config import WindowConfig
from models.detect import Detector
from models.evaluation.metrics import coverage
from models.training.manifest import load_manifest
from models.window import Highlight, best_window, fused_curve, select, select_top, slot_attention


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
    fsim = None
    if scores.slot_chroma is not None:
        fine = scores.slot_chroma
        fsim = nets.phrase_similarity(torch.from_numpy(fine[None]), torch.tensor([len(fine)]),
                                      sc.fine_slots)[0].numpy().astype(np.float64)
    rep = nets.repetition_features(torch.from_numpy(chroma[None]), torch.tensor([len(chroma)]))
    return {"chorus": song.chorus, "duration": scores.duration_s,
            "chorusness": np.asarray(scores.chorusness, np.float64),
            "chunk_lengths": np.asarray(scores.chunk_lengths), "sections": sections,
            "energy": np.asarray(scores.slot_energy, np.float64), "sim": phrase_similarity(chroma), "fsim": fsim,
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


def window_at(slot: int, h, cfg, slot_s: float, duration: float):
    """The ``cfg.length_s`` window starting at ``slot`` (moved back to fit the track), scored as ``h``."""
    end = min(slot * slot_s + cfg.length_s, duration)
    return type(h)(round(max(0.0, end - cfg.length_s), 3), round(end, 3), h.score)


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
        return window_at(best, h, cfg, slot_s, r["duration"])
    return choose


def material_clusters(sim: np.ndarray, k: int, lag: int = nets.REPETITION_MIN_LAG) -> np.ndarray:
    """Cluster label per chunk: Laplacian segmentation (McFee and Ellis 2014) of ``sim``."""
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans
    n = len(sim)
    idx = np.arange(n)
    s = np.clip(sim, 0, None) * (np.abs(idx[:, None] - idx[None, :]) >= lag)
    knn = min(n - 1, max(3, int(2 * np.ceil(np.log2(max(n, 2))))))
    thr = -np.sort(-s, axis=1)[:, knn - 1:knn]
    rec = np.where((s >= thr) & (s.T >= thr.T) & (s > 0), s, 0.0)  # mutual nearest neighbours
    path = np.zeros((n, n))
    path[idx[:-1], idx[1:]] = path[idx[1:], idx[:-1]] = 1.0
    dr, dp = rec.sum(1), path.sum(1)
    mu = dp.dot(dp + dr) / max(1e-9, float(((dp + dr) ** 2).sum()))
    a = mu * rec + (1 - mu) * path
    d = a.sum(1)
    d[d == 0] = 1
    _, v = eigh(np.eye(n) - a / np.sqrt(d[:, None] * d[None, :]))
    x = v[:, :k] / (np.linalg.norm(v[:, :k], axis=1, keepdims=True) + 1e-9)
    return KMeans(k, n_init=10, random_state=0).fit_predict(x)


def first_material(k: int, rel: float, delta: float):
    def curve(r):
        ch = r["chorusness"]
        if len(ch) <= k:
            return ch
        c = material_clusters(r["sim"], k)
        mean = {i: ch[c == i].mean() for i in set(c)}
        first = {}
        for i in mean:
            pos = np.flatnonzero(c == i)
            runs = [run for run in np.split(pos, np.flatnonzero(np.diff(pos) > 1) + 1) if len(run) >= 2]
            first[i] = runs[0][0] if runs else pos[0]
        top = max(mean.values())
        b = min((i for i in mean if mean[i] >= rel * top), key=lambda i: first[i])
        return ch * np.where(c == b, 1.0, delta)
    return curve


def after_verse(theta: float, smooth: int, tol: int, chunk_slots: int):
    def choose(r, att, cfg, slot_s):
        h = select(att, r["energy"], slot_s=slot_s, duration_s=r["duration"], cfg=cfg)
        width = int(round(cfg.length_s / slot_s))
        n = len(att)
        if r["duration"] <= cfg.length_s or n <= width:
            return h
        a = r["sections"][:, 1]
        if smooth > 1:
            a = np.convolve(np.pad(a, (smooth // 2, smooth - 1 - smooth // 2), mode="edge"),
                            np.ones(smooth) / smooth, "valid")
        ends, run = [], 0
        for i, v in enumerate(a >= theta):
            if v:
                run += 1
                continue
            if run >= 2:
                ends.append(i)
            run = 0
        allowed = np.zeros(n - width + 1, bool)
        for e in ends:
            allowed[max(0, (e - tol) * chunk_slots):(e + tol + 1) * chunk_slots] = True
        if not allowed.any():
            return h
        i, _ = best_window(fused_curve(att, r["energy"], cfg.gamma)[0], width, allowed=allowed)
        return window_at(i, h, cfg, slot_s, r["duration"])
    return choose


def contrast(lam: float, margin: int, how: str):
    """Window sum minus ``lam`` times the chorusness just outside it (``margin`` slots a side,
    their mean or the larger side's): a window that holds a whole high-chorusness run beats
    one inside a longer run."""
    def choose(r, att, cfg, slot_s):
        h = select(att, r["energy"], slot_s=slot_s, duration_s=r["duration"], cfg=cfg)
        width = int(round(cfg.length_s / slot_s))
        n = len(att)
        if n <= width:
            return h
        a = np.asarray(att, np.float64)
        inside = np.convolve(a, np.ones(width), "valid") / width
        pad = np.pad(a, (margin, margin), mode="constant")
        side = np.convolve(pad, np.ones(margin), "valid") / margin  # side[k]: mean of pad[k:k+margin]
        starts = np.arange(len(inside))
        before, after = side[starts], side[starts + width + margin]
        out = (before + after) / 2 if how == "mean" else np.maximum(before, after)
        j = int(np.argmax(inside - lam * out))
        return window_at(j, h, cfg, slot_s, r["duration"])
    return choose


def first_chorus_phrase(theta: float, span: int, a: float, floor: float, smooth: int = 1,
                        low: float = 0.0):
    """Chorusness weighted by how well each chunk's phrase matches the first chorus-like
    phrase: the ``span`` chunks from the first one whose chorusness reaches ``theta`` of the
    track's largest (POP909's chorus is the second material in order of first hearing; the
    later material (C, ...) that follows it is often louder and more repeated)."""
    def curve(r):
        ch = r["chorusness"]
        sim = r["fsim"]
        if sim is None or len(ch) < 2:
            return ch
        find = ch if smooth == 1 else np.convolve(
            np.pad(ch, (smooth // 2, smooth - 1 - smooth // 2), mode="edge"), np.ones(smooth) / smooth,
            "valid")
        i = int(np.flatnonzero(find >= theta * find.max())[0])
        while low and i > 0 and find[i - 1] >= low * find.max():  # back to where the rise began
            i -= 1
        return weigh_from(ch, sim, i, span, a, floor)
    return curve


def weigh_from(ch: np.ndarray, sim: np.ndarray, i: int, span: int = 4, a: float = 2.0,
               floor: float = 0.2) -> np.ndarray:
    """Chorusness * (floor + (1 - floor) * match)^a, match = the best phrase similarity to the
    ``span`` chunks from chunk ``i`` (1 on them); the defaults are the shipped settings."""
    ref = np.arange(i, min(len(ch), i + span))
    w = np.clip(sim[:, ref].max(1), 0, 1)
    w[ref] = 1.0
    return ch * (floor + (1 - floor) * w) ** a


def shipped_reference(ch: np.ndarray) -> int:
    """The first chunk of the shipped first-chorus reference (``models.first_chorus``)."""
    return int(first_chorus.reference(ch, 0.6, 4)[0])


def _smooth3(x: np.ndarray) -> np.ndarray:
    return np.convolve(np.pad(x, (1, 1), mode="edge"), np.ones(3) / 3, "valid")


def ref_from(how: str, th: float):
    """The first-chorus weight (shipped settings) with its reference found another way:
    ``pb`` the first chunk whose (3-chunk mean) section-head P(B) reaches ``th`` of its
    largest; ``afterA`` the first melodic chunk after the first run of 2 chunks with
    P(A) >= ``th``; ``earliest`` the earlier of that and the shipped reference, where its
    chorusness is at least 0.3 of the largest."""
    def after_a(sec):
        a, run = _smooth3(sec[:, 1]) >= th, 0
        for i in range(len(a)):
            run = run + 1 if a[i] else 0
            if run >= 2:
                j = i + 1
                while j < len(a) and (a[j] or sec[j, 0] >= 0.5):
                    j += 1
                return j if j < len(a) else None
        return None

    def curve(r):
        ch, sim = r["chorusness"], r["fsim"]
        if sim is None or len(ch) < 2:
            return ch
        i = shipped_reference(ch)
        if how == "pb":
            f = _smooth3(r["sections"][:, 2])
            i = int(np.flatnonzero(f >= th * f.max())[0])
        elif how in ("afterA", "earliest"):
            j = after_a(r["sections"])
            if j is not None and (how == "afterA" or (j < i and _smooth3(ch)[j] >= 0.3 * _smooth3(ch).max())):
                i = j
        return weigh_from(ch, sim, i)
    return curve


def start_at_reference(back: int, chunk_s: float):
    """The 30 s window started ``back`` chunks before the shipped first-chorus reference."""
    def choose(r, att, cfg, slot_s):
        i = shipped_reference(r["chorusness"])
        end = min(r["duration"], max(0.0, (i - back) * chunk_s) + cfg.length_s)
        return Highlight(max(0.0, end - cfg.length_s), end, 0.0)
    return choose


def variants(chunk_s: float, chunk_slots: int) -> dict:
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
    for sh in (1, 2, 3, 4):
        out[f"lead{sh}"] = ((lambda sh: lambda r: np.concatenate(
            [r["chorusness"][sh:], np.zeros(min(sh, len(r["chorusness"])))]))(sh), None)
        out[f"fwdmax{sh}"] = ((lambda sh: lambda r: np.array(
            [r["chorusness"][i:i + sh + 1].max() for i in range(len(r["chorusness"]))]))(sh), None)
    for k in (4, 5, 6):
        for rel in (0.5, 0.7):
            for delta in (0.3, 0.6):
                out[f"material k{k} rel{rel} d{delta}"] = (first_material(k, rel, delta), None)
    for theta in (0.3, 0.5):
        for smooth in (1, 3):
            for tol in (0, 1):
                out[f"afterA th{theta} sm{smooth} tol{tol}"] = (ch, after_verse(theta, smooth, tol,
                                                                                  chunk_slots))
    for span in (5, 10):
        for tol in (0.0, 0.02, 0.05):
            for w in (5, 10):
                out[f"snap s{span} tol{tol} w{w}"] = (ch, snap(span, tol, w))
    for theta in (0.5, 0.7, 0.85):
        for span in (1, 2, 3):
            for a in (1.0, 2.0):
                for floor in (0.0, 0.3):
                    out[f"firstB th{theta} s{span} a{a} f{floor}"] = (
                        first_chorus_phrase(theta, span, a, floor), None)
    for theta in (0.5, 0.6, 0.7):
        for span in (2, 3, 4, 5, 6):
            for a in (1.0, 2.0, 3.0):
                for floor in (0.0, 0.2):
                    out[f"firstBs th{theta} s{span} a{a} f{floor}"] = (
                        first_chorus_phrase(theta, span, a, floor, smooth=3), None)
    for theta in (0.6, 0.7, 0.8):
        for low in (0.3, 0.4, 0.5):
            for span in (3, 4):
                out[f"fcback th{theta} low{low} s{span}"] = (
                    first_chorus_phrase(theta, span, 2.0, 0.2, smooth=3, low=low), None)
    for th in (0.5, 0.6, 0.7):
        out[f"refPB th{th}"] = (ref_from("pb", th), None)
    for th in (0.4, 0.5, 0.6):
        out[f"refafterA pa{th}"] = (ref_from("afterA", th), None)
        out[f"refearliest pa{th}"] = (ref_from("earliest", th), None)
    for back in (0, 1, 2):
        out[f"startref {back}"] = (ch, start_at_reference(back, chunk_s))
    for lam in (0.25, 0.5, 1.0):
        for margin in (10, 20, 40):
            for how in ("mean", "max"):
                out[f"contrast l{lam} m{margin} {how}"] = (ch, contrast(lam, margin, how))
                out[f"fc+contrast l{lam} m{margin} {how}"] = (
                    first_chorus_phrase(0.6, 4, 2.0, 0.2, smooth=3), contrast(lam, margin, how))
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


def chunk_labels(sections: list[dict], n: int, chunk_s: float) -> np.ndarray:
    """The annotated phrase label at each chunk's centre ("-" outside every phrase)."""
    centres = (np.arange(n) + 0.5) * chunk_s
    out = np.array(["-"] * n, dtype=object)
    for sec in sections:
        out[(centres >= sec["start"]) & (centres < sec["end"])] = sec["label"]
    return out


def analyse(recs, labels, det: Detector) -> None:
    """The oracle (later material's chorusness set to 0) and how often a B or C chunk's best
    phrase match (at least REPETITION_MIN_LAG chunks away) carries each label."""
    later = [np.array([0.0 if lab.isupper() and lab not in "AB" else 1.0 for lab in ls]) for ls in labels]
    it = iter(later)
    c50, prec = measure(recs, lambda r: r["chorusness"] * next(it), None, det)
    print(f"  oracle, later material's chorusness 0: c50 {c50:.3f}, precision {prec:.3f}")
    for own in "BC":
        hits: dict[str, int] = {}
        for r, ls in zip(recs, labels):
            sim = r["sim"]
            for i in np.flatnonzero(ls == own):
                row = sim[i].copy()
                row[max(0, i - nets.REPETITION_MIN_LAG + 1):i + nets.REPETITION_MIN_LAG] = -np.inf
                if np.isfinite(row).any():
                    hits[ls[int(np.argmax(row))]] = hits.get(ls[int(np.argmax(row))], 0) + 1
        total = sum(hits.values())
        print(f"  best match of a {own} chunk: " + ", ".join(
            f"{k} {v / total:.3f}" for k, v in sorted(hits.items(), key=lambda kv: -kv[1])[:4]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("--split", default="val")
    p.add_argument("--only", default="", help="only the variants whose name starts with this "
                   "(and base)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped default)")
    p.add_argument("--annotations", help="POP909 annotations.jsonl: also print the B/C analysis "
                   "(docs/evaluation.md) from the annotated phrase labels")
    p.add_argument("--cache", help="keep the scored songs in this pickle and reuse them "
                   "(the same manifests and checkpoint)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)  # the scorer's tail embedding reads tensors as numpy
    det = Detector(ckpt=ckpts.load(args.checkpoint))  # None: the shipped default
    assert isinstance(det.cfg.window, WindowConfig)
    chunk_s = det.scorer.cfg.chunk_frames * det.ckpt.mel.frame_seconds
    renders = []
    cached = None
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as f:
            cached = pickle.load(f)
    for i, path in enumerate(args.manifests):
        songs = [s for s in load_manifest(path) if s.chorus and s.split == args.split]
        renders.append(cached[i] if cached else [song_curves(det, s) for s in songs])
        if args.annotations:
            with open(args.annotations) as f:
                sections = {a["id"]: a["sections"] for a in map(json.loads, f)}
            print(path)
            analyse(renders[-1], [chunk_labels(sections[str(s.id).zfill(3)], len(r["chorusness"]),
                                               chunk_s) for s, r in zip(songs, renders[-1])], det)
    if args.cache and cached is None:
        with open(args.cache, "wb") as f:
            pickle.dump(renders, f)
    print("variant".ljust(26) + "".join(f"{'c50':>8}{'prec':>7}" for _ in renders) + "   mean")
    chunk_slots = det.scorer.cfg.chunk_frames // det.scorer.cfg.slot_frames
    for name, (curve_fn, choose) in variants(chunk_s, chunk_slots).items():
        if args.only and name != "base" and not name.startswith(args.only):
            continue
        vals = [measure(recs, curve_fn, choose, det) for recs in renders]
        mean = np.mean([(c + q) / 2 for c, q in vals])
        print(name.ljust(26) + "".join(f"{c:8.3f}{q:7.3f}" for c, q in vals) + f"   {mean:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
