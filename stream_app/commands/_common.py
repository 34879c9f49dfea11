"""Flags shared by the commands that talk to Kafka, and argparse value checks.

Every Kafka command accepts ``-b/--bootstrap-server`` (the Kafka tools' name)
beside ``--bootstrap``, and ``--config``. Value checks are argparse ``type=``
functions, so a bad value is a usage error (exit code 2) reported before
anything else happens.
"""

from __future__ import annotations

import argparse
import math


def add_kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bootstrap-server", "--bootstrap", dest="bootstrap", metavar="HOST:PORT",
                   help="Kafka bootstrap servers, host:port[,host:port...] "
                        "(default: $HOOKSTREAM_BOOTSTRAP, else the config)")
    p.add_argument("--config", metavar="FILE", help="stream settings YAML (default configs/stream.yaml)")


def load_detector(args, command: str):
    """The Detector for ``--config``, ``--length`` and ``--checkpoint``; warns when untrained."""
    import sys
    from dataclasses import replace

    from models import checkpoint
    from models.config import load_detect_config
    from models.detect import Detector

    cfg = load_detect_config(args.config)
    if args.length is not None:
        cfg = replace(cfg, window=replace(cfg.window, length_s=args.length))
    detector = Detector(cfg, checkpoint.load(args.checkpoint or cfg.checkpoint))
    if not detector.ckpt.trained:
        print(f"hookstream {command}: warning: {detector.ckpt.name} is an untrained model; "
              "its highlights are not meaningful", file=sys.stderr)
    return detector


def positive_float(text: str) -> float:
    """A finite number > 0 (``inf`` and ``nan`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535], got {text!r}")
    return value
