"""Does the highlight survive the audio conditions of real uploads? (validation split)

    python scripts/audio_conditions.py data/val-timgm/manifest.jsonl --out data/conditions

Writes a copy of the manifest's annotated songs (``--split``, val by default) under
each audio condition of ``models/evaluation/conditions.py`` into
``OUT/<render>-<condition>/`` (audio, and a manifest whose chorus and section times
follow the audio; kept and reused when it exists), evaluates the default detector
and the baselines on the clean songs and on every copy exactly as ``hookstream
eval`` does, prints c50 / precision per condition with the change from clean, and
writes ``OUT/<render>-conditions.json`` and a plot ``OUT/<render>-conditions.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.config import load_detect_config
from models.detect import Detector
from models.evaluation.conditions import CONDITIONS, write_condition
from models.evaluation.evaluate import evaluate
from models.training.manifest import load_manifest

SHOWN = ("hookstream", "energy", "repetition")


def plot(figures: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(figures)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, metric in zip(axes, ("c50", "precision")):
        for k, method in enumerate(SHOWN):
            bars = ax.bar(x + (k - 1) * 0.27, [figures[n][method][metric] for n in names], 0.27,
                          label=method)
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(x, names, rotation=25, fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, ncols=3, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, default=Path("data/conditions"))
    p.add_argument("--split", default="val")
    p.add_argument("--conditions", nargs="*", choices=list(CONDITIONS), default=list(CONDITIONS))
    p.add_argument("--config", help="detection YAML (default configs/detect.yaml)")
    args = p.parse_args()
    torch.set_num_threads(1)
    det = Detector(load_detect_config(args.config))
    render = args.manifest.parent.name
    manifests = {"clean": args.manifest}
    for name in args.conditions:
        manifests[name] = write_condition(args.manifest, args.split, name,
                                          args.out / f"{render}-{name}")
    figures: dict[str, dict] = {}
    for name, manifest in manifests.items():
        result = evaluate(load_manifest(manifest), det, split=args.split)
        figures[name] = {m: result.summary[m] for m in SHOWN}
        figures[name]["songs"] = len(result.songs)
    clean = figures["clean"]["hookstream"]
    print(f"{render}, split {args.split}, model {det.scorer.model_name}: c50 / precision")
    print(f"{'condition':<16}{'songs':>6}" + "".join(f"{m:>14}" for m in SHOWN) + f"{'change':>18}")
    for name, f in figures.items():
        h = f["hookstream"]
        change = f"{h['c50'] - clean['c50']:+.3f} / {h['precision'] - clean['precision']:+.3f}"
        print(f"{name:<16}{f['songs']:>6}" + "".join(
            f"{f[m]['c50']:>8.3f}/{f[m]['precision']:.3f}" for m in SHOWN) + f"{change:>18}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{render}-conditions.json").write_text(json.dumps(
        {"render": render, "split": args.split, "model": det.scorer.model_name,
         "figures": figures}, indent=1))
    plot(figures, args.out / f"{render}-conditions.png",
         f"{render} ({args.split}), {det.scorer.model_name}: highlight under audio conditions")
    print(f"wrote {args.out / f'{render}-conditions.json'} and the plot beside it")


if __name__ == "__main__":
    main()
