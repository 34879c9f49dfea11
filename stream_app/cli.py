"""The ``hookstream`` console script: one entry point, one subcommand per module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from models.errors import HookstreamError
from stream_app.errors import EXIT_INTERRUPTED, exit_code

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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages, client libraries' included")
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stream_app.commands.{name}").register(sub)
    return parser


def version() -> str:
    """The installed distribution's version (pyproject.toml's, for an editable install)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("hookstream")
    except PackageNotFoundError:  # running from a checkout that was never installed
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


# Client libraries log connection trouble themselves (WARNING/ERROR lines before
# hookstream's own one-line error); without --verbose only their CRITICAL lines pass.
# The worker, a service, keeps their warnings: an operator reads its log.
NOISY_LOGGERS = ("kafka", "aiokafka", "faust", "mode", "numba")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        level = logging.WARNING if args.command == "worker" else logging.CRITICAL
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(level)
    try:
        return int(args.func(args) or 0)
    except HookstreamError as exc:
        print(f"hookstream {args.command}: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
