"""``hookstream bench [--tracks N] [--concurrency K] [--phases LIST] [--device DEV] [--sweep [K1,K2,...]] [--json]``."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from stream_app.bench.config import DEFAULT_KS, PHASES, BenchConfig

    d = BenchConfig()
    p = sub.add_parser(
        "bench", help="measure offline and streaming throughput, latency and memory",
        description="Offline detect throughput, streaming throughput through the embedded "
                    "broker and a worker process, chunk-to-provisional latency with tracks "
                    "ingested in real time, and worker memory per open track, in one run. "
                    "Progress goes to stderr; the report (or one JSON object) to stdout. "
                    "See docs/performance.md.")
    p.add_argument("--tracks", type=int, default=d.tracks, metavar="N",
                   help=f"synthetic songs for the throughput phases (default {d.tracks})")
    p.add_argument("--concurrency", type=int, default=d.concurrency, metavar="K",
                   help=f"songs ingested at once in real time for the latency phase "
                        f"(default {d.concurrency})")
    p.add_argument("--seconds", type=float, default=d.seconds, metavar="S",
                   help=f"length of each throughput song (default {d.seconds:g})")
    p.add_argument("--realtime-seconds", type=float, default=d.realtime_seconds, metavar="S",
                   help=f"length of each latency song (default {d.realtime_seconds:g})")
    p.add_argument("--memory-tracks", type=int, default=d.memory_tracks, metavar="M",
                   help=f"tracks held open for the memory phase (default {d.memory_tracks})")
    p.add_argument("--profile-seconds", type=float, default=d.profile_seconds, metavar="S",
                   help=f"length of the track whose scorer stages are timed; 0 skips it "
                        f"(default {d.profile_seconds:g})")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint (default: the shipped model, or an untrained "
                        "full-size Huang network when there is none)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads in this process and the worker "
                        "(sets OMP_NUM_THREADS for the worker; default: torch's own choice)")
    p.add_argument("--phases", default=",".join(PHASES), metavar="LIST",
                   help=f"comma-separated phases to run (default all: {','.join(PHASES)})")
    p.add_argument("--device", default=d.device, metavar="DEV",
                   help="scorer device here and in the workers: auto (CUDA when present), cpu, "
                        "cuda or cuda:N (default auto)")
    p.add_argument("--sweep", nargs="?", const=",".join(map(str, DEFAULT_KS)), default=None,
                   metavar="K1,K2,...",
                   help="capacity sweep instead of the phases: K live tracks in real time into "
                        "one worker for each K (default " + ",".join(map(str, DEFAULT_KS)) + "); "
                        "reports latency, worker CPU and backlog per K, and the largest K held "
                        "(p99 <= 1 s, no growing backlog)")
    p.add_argument("--sweep-seconds", type=float, default=d.sweep_seconds, metavar="S",
                   help=f"real-time seconds per K in the sweep (default {d.sweep_seconds:g})")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="with --sweep: draw latency and worker CPU against K to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.set_defaults(func=run)


def run(args) -> int:
    from stream_app.bench import BenchConfig, format_report, run_bench
    from stream_app.bench.sweep import parse_ks, plot_sweep
    from stream_app.errors import UsageError

    if args.plot and not args.sweep:
        raise UsageError("--plot draws the capacity sweep: give --sweep too")
    cfg = BenchConfig(tracks=args.tracks, concurrency=args.concurrency, seconds=args.seconds,
                      realtime_seconds=args.realtime_seconds, memory_tracks=args.memory_tracks,
                      profile_seconds=args.profile_seconds, checkpoint=args.checkpoint,
                      torch_threads=args.torch_threads, device=args.device,
                      phases=tuple(x.strip() for x in args.phases.split(",") if x.strip()),
                      sweep=parse_ks(args.sweep) if args.sweep else (),
                      sweep_seconds=args.sweep_seconds)
    results = run_bench(cfg, progress=sys.stderr)
    if args.plot:
        print(f"bench: plot {plot_sweep(results['sweep'], args.plot)}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results), flush=True)
    else:
        print(format_report(results), flush=True)
    return 0
