"""``hookstream clip PATH... --out DIR``: write each track's highlight as an audio clip."""

from __future__ import annotations

import json
import sys
from pathlib import Path


# As models.clip (a test checks), kept here so that `--help` imports no numpy or libsndfile.
FORMATS = ("wav", "flac", "ogg", "mp3")
DEFAULT_FORMAT = "ogg"
DEFAULT_FADE_IN_S = 1.0
DEFAULT_FADE_OUT_S = 2.0


def register(sub) -> None:
    p = sub.add_parser(
        "clip", help="write the highlight of audio files as preview clips",
        description="Find each file's highlight (or read it from final highlight events) and "
                    "write it as a clip cut from the original file, at the file's own sample "
                    "rate and channels, with equal-power fades. One JSON line per input with "
                    "--json; exit 1 if any input failed. Existing clips are kept unless "
                    "--overwrite.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files (wav, flac, ogg, mp3)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the clips (created if missing)")
    p.add_argument("--length", type=float, default=None, metavar="S",
                   help="clip length in seconds (default: the detect length, 30; with "
                        "--from-events, the event's span)")
    p.add_argument("--fade-in", type=float, default=DEFAULT_FADE_IN_S, metavar="S",
                   help=f"equal-power fade in, seconds (default {DEFAULT_FADE_IN_S:g})")
    p.add_argument("--fade-out", type=float, default=DEFAULT_FADE_OUT_S, metavar="S",
                   help=f"equal-power fade out, seconds (default {DEFAULT_FADE_OUT_S:g})")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"clip format (default {DEFAULT_FORMAT}; mp3 only at 8-48 kHz rates)")
    p.add_argument("--loudness", type=float, default=None, metavar="LUFS",
                   help="normalise to this integrated loudness (BS.1770 / EBU R128, e.g. -14), "
                        "true peak kept under -1 dBTP")
    p.add_argument("--from-events", default=None, metavar="FILE",
                   help="take the spans from final highlight events (JSON lines, as "
                        "`hookstream subscribe` prints them; - for stdin), matched to PATHs by "
                        "track id (the file name without extension)")
    p.add_argument("--overwrite", action="store_true", help="replace clips that already exist")
    p.add_argument("--json", action="store_true", help="one JSON object per input per line")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint (.safetensors); default: the shipped model")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="detection config YAML (default: configs/detect.yaml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from models.clip import ClipOptions, check_out_dir, clip_path, cut_clip
    from models.detect import track_id_for
    from models.errors import HookstreamError, InputError

    opts = ClipOptions(fade_in_s=args.fade_in, fade_out_s=args.fade_out, format=args.format,
                       loudness_lufs=args.loudness)
    if args.length is not None and not args.length > 0:
        raise InputError(f"--length must be positive, got {args.length!r}")
    out_dir = check_out_dir(args.out)
    ids = [track_id_for(p) for p in args.paths]
    dupes = {t for t in ids if ids.count(t) > 1}
    if dupes:
        raise InputError(f"several PATHs would be track {sorted(dupes)[0]!r} (clips are named by "
                         "track id, the file name without extension); rename one")
    spans = _spans_from_events(args.from_events, args.length) if args.from_events else None
    detector = None if spans is not None else _detector(args)

    failed = 0
    bar = tqdm(list(zip(args.paths, ids)), desc="clip", unit="file", file=sys.stderr,
               disable=len(args.paths) < 2)
    for path, tid in bar:
        row = {"path": str(path), "track_id": tid}
        out = clip_path(out_dir, tid, opts.format)
        span = spans.pop(tid, None) if spans is not None else None  # this PATH matched its event
        try:
            if out.exists() and not args.overwrite:  # before spending a detection on it
                raise InputError(f"{out}: clip already exists (use --overwrite to replace it)")
            if spans is not None:
                if span is None:
                    raise InputError(f"{path}: no final highlight event for track {tid!r} "
                                     f"in {args.from_events}")
                start, end, extra = span
            else:
                det = detector.detect_file(path)
                start, end = det.highlight.start_s, det.highlight.end_s
                extra = {"score": round(det.highlight.score, 6), "model": det.model}
            clip = cut_clip(path, start, end, out, options=opts, overwrite=args.overwrite)
        except HookstreamError as exc:
            failed += 1
            tqdm.write(f"hookstream clip: {exc}", file=sys.stderr)
            row = {"path": str(path), "error": str(exc)}
        else:
            row.update(clip.as_json(), **extra)
        _emit(row, args.json)
    for tid, (_s, _e, _x) in sorted((spans or {}).items()):  # events no PATH matched
        failed += 1
        msg = f"{args.from_events}: final highlight event for track {tid!r} matches none of the PATHs"
        print(f"hookstream clip: {msg}", file=sys.stderr)
        _emit({"track_id": tid, "error": msg}, args.json)
    return 1 if failed else 0


def _emit(row: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(row, ensure_ascii=False), flush=True)
    elif "error" not in row:
        print(f"{row['clip']}  {row['start_s']:.2f}-{row['end_s']:.2f} s  "
              f"{row['sample_rate']} Hz x {row['channels']}  ({row['path']})", flush=True)


def _detector(args):
    from stream_app.commands._common import load_detector

    return load_detector(args, "clip")


def _spans_from_events(path: str, length: float | None) -> dict[str, tuple[float, float, dict]]:
    """track id -> (start_s, end_s, extra JSON fields) from the final events in ``path``.

    Provisional events are skipped; of several finals for a track the last wins
    (a re-run of the track). A line that is not a highlight event is an error
    naming the file and line.
    """
    from models.errors import InputError
    from stream_app.events import decode_highlight

    spans: dict[str, tuple[float, float, dict]] = {}
    try:
        lines = (sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()).splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the events file ({exc.strerror or exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = decode_highlight(line)
        except InputError as exc:
            raise InputError(f"{path}:{n}: not a highlight event ({exc})") from None
        if event["kind"] != "final":
            continue
        start, end = event["start_s"], event["end_s"]
        if length is not None:
            end = start + length
        spans[event["track_id"]] = (start, end, {"score": event["score"], "model": event["model"],
                                                 "event_id": event["event_id"]})
    return spans
