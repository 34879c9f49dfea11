"""``hookstream subscribe``: print highlight events, one JSON object per line."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "subscribe",
        help="print highlight events as JSON lines",
        description=(
            "Print highlight events from the highlights topic, one compact JSON object per line, "
            "each event_id once. Without --count or --timeout it runs until Ctrl-C."
        ),
    )
    p.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default: $HOOKSTREAM_BOOTSTRAP, else the config)")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest event kept by the broker (default: only new events)")
    p.add_argument("--final-only", action="store_true", help="print only final events, not provisional ones")
    p.add_argument("--count", type=int, metavar="N", help="stop after printing N events")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="stop when S seconds pass without a new event being printed")
    p.add_argument("--track-id", action="append", metavar="ID", help="only this track (repeatable)")
    p.add_argument("--config", metavar="FILE", help="stream settings YAML (default configs/stream.yaml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import sys

    from models.errors import InputError
    from stream_app.settings import load_settings
    from stream_app.subscribe import iter_highlights

    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.count is not None and args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    if args.timeout is not None and not args.timeout > 0:
        raise InputError(f"--timeout must be positive, got {args.timeout}")
    settings = load_settings(args.config, environ=os.environ, bootstrap=args.bootstrap)
    events = iter_highlights(
        settings,
        from_beginning=args.from_beginning,
        final_only=args.final_only,
        timeout_s=args.timeout,
        track_ids=args.track_id,
    )
    printed = 0
    try:
        for event in events:
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            printed += 1
            if args.count is not None and printed >= args.count:
                break
    except BrokenPipeError:  # piped into `head`: stop quietly, and keep exit-time flushes quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
    return 0
