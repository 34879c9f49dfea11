"""The ``hookstream`` console script: one entry point, one subcommand per module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from models.errors import HookstreamError

# In the order a user meets them: offline detection, training, streaming.
COMMANDS = (
    "detect",
    "clip",
    "data",
    "train",
    "eval",
    "broker",
    "worker",
    "ingest",
    "subscribe",
    "demo",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookstream",
        description="Streaming music highlight detection (Huang 2017 / Ha 2018 attention models).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stream_app.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # client libraries narrate every connection at INFO
        for noisy in ("kafka", "aiokafka", "faust", "mode", "numba"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except HookstreamError as exc:
        print(f"hookstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
