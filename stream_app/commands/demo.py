"""``hookstream demo [PATH...]``: the whole pipeline on the embedded broker."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="start a broker and a worker, stream files, print highlights",
                       description="Start the embedded broker and a worker, ingest the files "
                                   "(or synthetic example songs), print highlight events as they "
                                   "arrive, then shut everything down.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files (default: examples)")
    p.add_argument("--realtime", action="store_true",
                   help="send audio at its own speed, as a live upload (default: full speed)")
    p.add_argument("--chunk-seconds", type=float, default=2.0, metavar="S")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="worker metrics port (default: a free port)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="give up when no event arrives for this long")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint for the worker (default: the shipped model)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stream_app.demo import free_port, run_demo

    return run_demo(args.paths, realtime=args.realtime, chunk_seconds=args.chunk_seconds,
                    metrics_port=args.metrics_port or free_port(), timeout_s=args.timeout,
                    worker_args=["--checkpoint", args.checkpoint] if args.checkpoint else [])
