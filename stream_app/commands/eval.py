"""``hookstream eval``: chorus correspondence of the model's highlight and of the baselines."""

from __future__ import annotations

import argparse
import json
import shlex
import sys



def register(sub) -> None:
    """Add the ``eval`` subcommand to the CLI's subparsers ``sub``."""
    p = sub.add_parser(
        "eval", help="compare the model's highlights and baselines with annotated choruses",
        description="Run the detector and the baselines (attention, fused, energy, repetition, "
                    "first30, middle30) on every song of a manifest that has chorus annotations, "
                    "and print c100 / c50 / precision / auc per method.",
    )
    p.add_argument("--manifest", required=True, help="song manifest (JSON Lines) with chorus spans")
    p.add_argument("--checkpoint", default=None,
                   help="model checkpoint (default: the config's, else the shipped model)")
    p.add_argument("--length", type=float, default=30.0,
                   help="highlight length in seconds (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write DIR/report.md, DIR/metrics.png and DIR/songs.png")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="only songs of this split (train, val, test)")
    p.add_argument("--config", default=None,
                   help="detection config (default: configs/detect.yaml)")
    p.add_argument("--grid", action="store_true",
                   help="also print c50/precision for a grid of window weights (CRAN eq. 9-10 "
                        "gamma, beta), to choose them on a validation split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the metrics, and write the report when asked."""
    from dataclasses import replace

    from models import checkpoint
    from models.config import load_detect_config
    from models.detect import Detector
    from models.evaluation.evaluate import evaluate, write_report
    from models.training.manifest import load_manifest

    cfg = load_detect_config(args.config)
    cfg = replace(cfg, window=replace(cfg.window, length_s=args.length))
    ckpt = checkpoint.load(args.checkpoint if args.checkpoint is not None else cfg.checkpoint)
    songs = load_manifest(args.manifest, check_files=False)  # a missing file is one failed song
    detector = Detector(cfg=cfg, ckpt=ckpt)
    result = evaluate(songs, detector, length_s=args.length, split=args.split,
                      progress=True)
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        split = f", split {args.split}" if args.split else ""
        print(f"model {result.model}, {len(result.songs)} songs{split}, "
              f"{args.length:g} s highlights" + (f", {len(result.failed)} failed" if result.failed else ""))
        print(result.table())
    if args.grid:
        from models.evaluation.evaluate import window_grid

        steps = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        rows = window_grid(result, slot_s=detector.scorer.slot_seconds, gammas=steps,
                           betas=[b for b in steps if b > 0])
        out = sys.stderr if args.json else sys.stdout
        print(f"window grid ({len(rows)} settings, best first):", file=out)
        print(f"{'gamma':>6} {'beta':>6} {'c50':>7} {'precision':>10} {'c100':>7}", file=out)
        for r in rows[:15]:
            print(f"{r['gamma']:>6.1f} {r['beta']:>6.1f} {r['c50']:>7.3f} {r['precision']:>10.3f} "
                  f"{r['c100']:>7.3f}", file=out)
    if args.report:
        paths = write_report(result, args.report, command_line(args))
        print(f"report: {paths['report']}", file=sys.stderr)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The ``hookstream eval`` command that reproduces ``args`` (for the report)."""
    parts = ["hookstream", "eval", "--manifest", args.manifest]
    for flag, value in (("--checkpoint", args.checkpoint), ("--split", args.split),
                        ("--config", args.config)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--length", f"{args.length:g}"] + (["--json"] if args.json else [])
    parts += ["--report", str(args.report)] if args.report else []
    return shlex.join(parts)
