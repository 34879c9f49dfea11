"""``hookstream subscribe``: print highlight events, one JSON object per line."""

from __future__ import annotations

import argparse

from stream_app.commands._common import add_kafka_args, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "subscribe",
        help="print highlight events as JSON lines",
        description=(
            "Print highlight events from the highlights topic, one compact JSON object per line, "
            "each event_id once. Without --count or --timeout it runs until Ctrl-C. It never "
            "creates a topic: before the workers have created it, it waits."
        ),
    )
    add_kafka_args(p)
    p.add_argument("--topic", metavar="NAME", help="highlights topic (default: topics.highlights of the config)")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest event kept by the broker (default: only new events)")
    p.add_argument("--final-only", action="store_true", help="print only final events, not provisional ones")
    p.add_argument("--count", type=positive_int, metavar="N", help="stop after printing N events")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="stop when S seconds pass without a new event being printed")
    p.add_argument("--track-id", action="append", metavar="ID", help="only this track (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    from stream_app.settings import load_settings
    from stream_app.subscribe import iter_highlights

    settings = load_settings(args.config, environ=os.environ, bootstrap=args.bootstrap,
                             topics={"highlights": args.topic})
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
