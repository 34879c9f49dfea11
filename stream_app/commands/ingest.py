"""``hookstream ingest``: publish audio files as chunk events on ``audio-chunks``."""

from __future__ import annotations

import argparse

from stream_app.commands._common import add_kafka_args, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="publish audio files as chunk events",
        description=(
            "Decode each file to 22,050 Hz mono and publish it as chunk events (key = track id, "
            "seq 0..n-1, the last one marked end). Every file is checked before the broker is "
            "contacted; a file that cannot be used is reported on stderr and nothing of it is sent; "
            "the others go on (exit code 1 if any failed, 3 if the broker cannot be reached)."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files (or --from-list); - reads one "
                   "from standard input (track id 'stdin' unless --track-id)")
    add_kafka_args(p)
    p.add_argument("--topic", metavar="NAME", help="chunk topic (default: topics.chunks of the config)")
    p.add_argument("--track-id", metavar="ID", help="track id (default: the file name without extension); one PATH only")
    p.add_argument("--chunk-seconds", type=positive_float, default=2.0, metavar="S",
                   help="seconds of audio per event (default 2.0; at most about 11 s for f32le)")
    p.add_argument("--realtime", action="store_true",
                   help="send at the audio's own pace, all files at once (default: as fast as possible, one by one)")
    p.add_argument("--encoding", choices=("f32le", "s16le"), default="f32le",
                   help="payload encoding (default f32le: exact; s16le halves the bytes but quantises)")
    p.add_argument("--native-rate", action="store_true",
                   help="send each file at its own sample rate and channels (the worker resamples; "
                        "chunks shortened where needed to stay under the message limit); default: "
                        "22,050 Hz mono")
    b = p.add_argument_group("catalogue backfill (stream_app/backfill.py)")
    b.add_argument("--from-list", metavar="FILE",
                   help="send the files listed in FILE, one 'PATH' or 'PATH<TAB>TRACK_ID' a line, "
                        "with a progress bar; failures are reported by path and the rest go on")
    b.add_argument("--max-in-flight", type=int, default=4, metavar="N",
                   help="tracks decoded and not yet acknowledged at once (default 4; bounds memory)")
    b.add_argument("--journal", metavar="FILE",
                   help="record of the tracks sent (default: FILE.journal beside the list)")
    b.add_argument("--resume", action="store_true",
                   help="skip tracks the journal marks sent and tracks with a final event on the "
                        "highlights topic")
    b.add_argument("--no-topic-check", action="store_true",
                   help="with --resume, trust the journal only (do not read the highlights topic)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from models.errors import InputError
    from stream_app.errors import UsageError
    from stream_app.ingest import check_chunk_seconds, default_track_id, spool_stdin
    from stream_app.settings import load_settings

    try:
        check_chunk_seconds(args.chunk_seconds, encoding=args.encoding)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    settings = load_settings(args.config, environ=os.environ, bootstrap=args.bootstrap,
                             topics={"chunks": args.topic})
    if args.from_list is not None:
        if args.paths or args.track_id is not None or args.realtime:
            raise UsageError("--from-list takes no PATH, --track-id or --realtime (ids go in the list)")
        return _from_list(args, settings)
    if not args.paths:
        raise UsageError("give audio files, or --from-list FILE")
    if args.track_id is not None and len(args.paths) != 1:
        raise UsageError(f"--track-id names one track but {len(args.paths)} files were given")
    ids = [args.track_id] if args.track_id is not None else [default_track_id(p) for p in args.paths]
    with tempfile.TemporaryDirectory(prefix="hookstream-stdin-") as spool:
        paths = spool_stdin(args.paths, spool)
        return _ingest(args, settings, paths, ids)


def _ingest(args, settings, paths: list[str], ids: list[str]) -> int:
    import sys

    from models.errors import InputError
    from stream_app.ingest import IngestResult, ingest_files, probe

    # Every file is looked at before the broker is contacted.
    results: dict[int, IngestResult] = {}
    for i, (path, tid) in enumerate(zip(paths, ids)):
        try:
            probe(path)
        except InputError as exc:
            results[i] = IngestResult(path, tid, error=str(exc))
    good = [i for i in range(len(paths)) if i not in results]
    if good:
        sent = ingest_files(
            [paths[i] for i in good],
            settings=settings,
            track_ids=[ids[i] for i in good],
            chunk_seconds=args.chunk_seconds,
            realtime=args.realtime,
            encoding=args.encoding,
            native_rate=args.native_rate,
        )
        results.update(zip(good, sent))
    for i in sorted(results):
        r = results[i]
        if r.ok:
            print(r.summary(), flush=True)
        else:
            print(f"hookstream ingest: {r.summary()}", file=sys.stderr, flush=True)
    return 0 if all(r.ok for r in results.values()) else 1


def _from_list(args, settings) -> int:
    import sys

    from tqdm import tqdm

    from stream_app.backfill import backfill

    bar = tqdm(desc="ingest", unit="track", file=sys.stderr, dynamic_ncols=True)

    def start(total: int, done: int) -> None:
        bar.reset(total=total)

    def result(entry, r) -> None:
        if r is not None and not r.ok:
            tqdm.write(f"hookstream ingest: {r.error}", file=sys.stderr)
        bar.update(1)

    try:
        summary = backfill(args.from_list, settings=settings, journal=args.journal,
                           resume=args.resume, check_topic=not args.no_topic_check,
                           max_in_flight=args.max_in_flight, chunk_seconds=args.chunk_seconds,
                           encoding=args.encoding, on_result=result, on_start=start,
                           native_rate=args.native_rate)
    finally:
        bar.close()
    print(f"{args.from_list}: {summary.listed} tracks listed, {summary.sent} sent "
          f"({summary.audio_s:.1f} s of audio), {summary.skipped} skipped as already done, "
          f"{summary.failed} failed", flush=True)
    return 1 if summary.failed else 0
