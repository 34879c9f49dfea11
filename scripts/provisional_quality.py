"""How good is the provisional highlight part-way through a track? (validation split)

    python scripts/provisional_quality.py data/pop909/manifest.jsonl data/val-timgm/manifest.jsonl

Streams every annotated song of each manifest through the scorer as the worker
does (``step`` with provisional refresh, 3 s of audio at a time), and at 25 / 50 / 75 % of the track
takes the provisional highlight (100 %: the final one). Each is judged against
the chorus spans heard so far (cut at that point; songs with none yet are
left out) with the metrics of ``hookstream eval``. Two windows: the config's
(``configs/detect.yaml`` by default: provisional highlights from the default
model's provisional head, with the first-chorus weight) and the same with
``window.first_chorus_provisional`` flipped, the measurement behind that
choice (docs/evaluation.md, "Provisional highlights"). ``--config`` with
``provisional_checkpoint: null`` measures the final model on provisional
contexts instead.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from models.audio import decode
from models.config import load_detect_config
from models.detect import Detector
from models.evaluation.metrics import coverage
from models.training.manifest import load_manifest

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
PIECE_S = 3.0  # audio per step, as a chunk event carries it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("--split", default="val")
    p.add_argument("--config", help="detection YAML (default configs/detect.yaml)")
    args = p.parse_args()
    torch.set_num_threads(1)
    det = Detector(load_detect_config(args.config))
    sc = det.scorer
    sr = det.ckpt.mel.sample_rate
    win = det.cfg.window
    flipped = replace(win, first_chorus_provisional=not win.first_chorus_provisional)
    print(f"provisional highlights from {sc.provisional_model_name}, finals from {sc.model_name}; "
          f"first_chorus_provisional: config {win.first_chorus_provisional}, flipped "
          f"{flipped.first_chorus_provisional}")
    for path in args.manifests:
        songs = [s for s in load_manifest(path) if s.chorus and s.split == args.split]
        res: dict[tuple[float, str], list[dict]] = {(f, w): [] for f in FRACTIONS
                                                    for w in ("config", "flipped")}
        for song in tqdm(songs, desc=path, unit="song"):
            x = decode(song.audio, sr=sr, max_duration_s=sc.cfg.max_duration_s)
            state, done = sc.init_state(str(song.id)), 0
            for f in FRACTIONS:
                end = int(len(x) * f)
                step = int(PIECE_S * sr)
                for i in range(done, end, step):
                    state = sc.step([(state, x[i:min(i + step, end)])])[0]
                done = end
                scores = sc.finalize([state])[0] if f == 1.0 else sc.provisional(state)
                heard = [(a, min(b, end / sr)) for a, b in song.chorus if a < end / sr]
                if not heard:
                    continue
                for name, window in (("config", win), ("flipped", flipped)):
                    h = det.highlight(scores, window)
                    res[f, name].append(coverage((h.start_s, h.end_s), heard))
        print(path)
        for f in FRACTIONS:
            cells = [f"{w}: c50 {np.mean([r['c50'] for r in res[f, w]]):.3f} precision "
                     f"{np.mean([r['precision'] for r in res[f, w]]):.3f}" for w in ("config", "flipped")]
            label = "final" if f == 1.0 else f"provisional at {f:.0%}"
            print(f"  {label:>18} ({len(res[f, 'config'])} songs): " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
