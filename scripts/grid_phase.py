"""Does the chunk grid's phase move the highlight? (validation split)

    python scripts/grid_phase.py data/pop909/manifest.jsonl data/val-timgm/manifest.jsonl ...

Scores every annotated song of each manifest as ``hookstream detect`` does, and
again with the audio's first 2, 3, 5, 7 or 8 slots (0.6-2.4 s) cut off, so the
3 s chunks fall elsewhere in the music. Prints c50 / precision per manifest for
each shifted grid alone (its highlight moved back by the cut) and for the slot
curves of several grids averaged (each aligned to the track's time), the
first-chorus weight applied per grid as the shipped window does
(docs/evaluation.md, "Provisional highlights from a provisional head", last list).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from models.audio import decode
from models.detect import Detector
from models.evaluation.metrics import coverage
from models.training.manifest import load_manifest
from models.window import select

SHIFTS = (0, 2, 3, 5, 7, 8)  # slots cut from the start
AVERAGES = {"0+5": (0, 5), "0+3+7": (0, 3, 7), "all six": SHIFTS}


def grid_curves(det: Detector, samples: np.ndarray):
    """(per shift, the window's slot curve on the track's own slot axis, NaN where not scored;
    the unshifted track's scores)."""
    sc = det.scorer
    step = sc.cfg.slot_frames * det.ckpt.mel.hop_length
    out, base = {}, None
    for shift in SHIFTS:
        state = sc.step([(sc.init_state("t"), samples[shift * step:])], refresh=[False])[0]
        scores = sc.finalize([state])[0]
        base = scores if shift == 0 else base
        curve, _ = det.slot_curves(scores)
        whole = np.full(len(curve) + shift, np.nan)
        whole[shift:] = curve
        out[shift] = whole
    return out, base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("--split", default="val")
    args = p.parse_args()
    torch.set_num_threads(1)
    det = Detector()
    sc = det.scorer
    rows: dict[str, list[tuple[float, float]]] = {}
    for path in args.manifests:
        res: dict[str, list[dict]] = {}
        songs = [s for s in load_manifest(path) if s.chorus and s.split == args.split]
        for song in tqdm(songs, desc=path, unit="song"):
            x = decode(song.audio, sr=det.ckpt.mel.sample_rate, max_duration_s=sc.cfg.max_duration_s)
            curves, base = grid_curves(det, x)
            energy, n = np.asarray(base.slot_energy, np.float64), len(base.slot_energy)
            variants = {f"grid +{k * sc.slot_seconds:.1f} s": [k] for k in SHIFTS}
            variants.update({f"mean of {name}": list(ks) for name, ks in AVERAGES.items()})
            for name, ks in variants.items():
                stack = np.stack([np.pad(curves[k], (0, max(0, n - len(curves[k]))),
                                         constant_values=np.nan)[:n] for k in ks])
                curve = np.nan_to_num(np.nanmean(stack, axis=0)) if len(ks) > 1 else np.nan_to_num(stack[0])
                h = select(curve, energy, slot_s=sc.slot_seconds, duration_s=base.duration_s,
                           cfg=det.cfg.window)
                res.setdefault(name, []).append(coverage((h.start_s, h.end_s), song.chorus))
        for name, ms in res.items():
            rows.setdefault(name, []).append((np.mean([m["c50"] for m in ms]),
                                              np.mean([m["precision"] for m in ms])))
    print("variant".ljust(20) + "".join(f"{'c50':>8}{'prec':>7}" for _ in args.manifests) + "   mean")
    for name, vals in rows.items():
        mean = np.mean([(c + q) / 2 for c, q in vals])
        print(name.ljust(20) + "".join(f"{c:8.3f}{q:7.3f}" for c, q in vals) + f"   {mean:.4f}")


if __name__ == "__main__":
    main()
