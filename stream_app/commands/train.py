"""``hookstream train``: train an attention model on a song manifest."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers ``sub``."""
    p = sub.add_parser("train", help="train an attention model on a manifest")
    p.add_argument("--config", required=True, help="training config, e.g. configs/train/huang-pop909.yaml")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>.resume/ when it exists (else start afresh)")
    p.add_argument("--epochs", type=int, help="override the config's total number of epochs")
    p.add_argument("--out", help="override the config's checkpoint path")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (the per-epoch log lines remain)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; print the checkpoint path, the history files and the best epoch's metrics."""
    from models.training.train import load_config, train

    cfg = load_config(args.config, epochs=args.epochs, out=args.out)
    result = train(cfg, resume=args.resume, progress=getattr(args, "progress", True))
    print(f"checkpoint: {result.checkpoint}")
    print(f"history: {result.history} (plot {result.plot})")
    print(f"epochs run: {result.epochs_run}"
          f"{' (stopped early)' if result.stopped_early else ''}, best epoch {result.best_epoch}")
    print("metrics: " + json.dumps({k: v for k, v in result.metrics.items()
                                    if k not in ("best_epoch", "epochs_run", "stopped_early")},
                                   default=str))
    return 0
