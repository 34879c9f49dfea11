"""``hookstream detect PATH... [--length S] [--checkpoint FILE] [--json] [--plot DIR] [--report DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stream_app.commands._common import positive_float


def register(sub) -> None:
    p = sub.add_parser("detect", help="find the highlight of audio files (offline)",
                       description="Find the ~30 s highlight of each file. With --json, one "
                                   "JSON object per input per line; exit 1 if any input failed.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="audio files (wav, flac, ogg, mp3); - reads one from standard input")
    p.add_argument("--length", type=positive_float, default=None, metavar="SECONDS",
                   help="highlight length in seconds (default: config, 30); a warning when a "
                        "track is shorter")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model checkpoint (.safetensors); default: the shipped model")
    p.add_argument("--top", type=int, default=1, metavar="K",
                   help="up to K non-overlapping highlights per track, best first, in the JSON "
                        "'highlights' list (default: 1)")
    p.add_argument("--json", action="store_true", help="one JSON object per input per line")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write a PNG per track: mel-spectrogram, attention, chosen span")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write a review page DIR/index.html (figure and clip player per track; "
                        "all files local to DIR)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="detection config YAML (default: configs/detect.yaml)")
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile

    from stream_app.ingest import spool_stdin

    with tempfile.TemporaryDirectory(prefix="hookstream-stdin-") as spool:
        paths = spool_stdin(args.paths, spool)
        names = {p: orig for p, orig in zip(paths, args.paths)}  # "-" shown as given
        return _detect(args, paths, names)


def _detect(args, paths: list[str], names: dict[str, str]) -> int:
    from tqdm import tqdm

    from models.audio import decode
    from models.detect import track_id_for
    from models.errors import HookstreamError
    from stream_app.commands._common import load_detector
    from stream_app.ingest import probe

    if args.top < 1:
        print(f"hookstream detect: error: --top {args.top}: must be at least 1", file=sys.stderr)
        return 2
    detector = load_detector(args, "detect")
    cfg = detector.cfg
    report = None
    if args.report:
        from stream_app.report import Report

        report = Report(args.report, detector)
    failed = 0
    rows = []
    bar = tqdm(paths, desc="detect", unit="file", file=sys.stderr, disable=len(paths) < 2)
    for path in bar:
        shown = names.get(path, path)
        try:
            probe(path)  # a corrupt file is called corrupt (not "does not exist")
            samples = decode(path, sr=detector.ckpt.mel.sample_rate,
                             max_duration_s=cfg.scorer.max_duration_s)
            duration_s = len(samples) / detector.ckpt.mel.sample_rate
            if cfg.window.length_s > duration_s:
                tqdm.write(f"hookstream detect: warning: {shown}: the highlight length "
                           f"{cfg.window.length_s:g} s is longer than the track ({duration_s:.1f} s); "
                           "the highlight is the whole track", file=sys.stderr)
            det = detector.detect_samples(track_id_for(path), samples, top_k=args.top)
        except HookstreamError as exc:
            failed += 1
            message = str(exc).replace(path, shown)  # standard input's spool file shown as "-"
            tqdm.write(f"hookstream detect: {message}", file=sys.stderr)
            row = {"path": shown, "error": message}
            if report is not None:
                report.add_error(shown, message)
        else:
            row = det.as_json(path=shown)
            if args.plot:
                row["plot"] = str(_plot(args.plot, path, samples, det, detector))
            if report is not None:
                report.add(path, samples, det)
        rows.append(row)
        if args.json:
            print(json.dumps(row, ensure_ascii=False), flush=True)
    if not args.json:
        _table(rows)
    if report is not None:
        print(f"hookstream detect: review page {report.finish()}", file=sys.stderr)
    return 1 if failed else 0


def _plot(out_dir: str, path: str, samples, det, detector) -> Path:
    from models.mel import mel_frames
    from models.plots import plot_track

    mel_cfg = detector.ckpt.mel
    return plot_track(Path(out_dir) / f"{det.track_id}.png", frames=mel_frames(samples, mel_cfg),
                      frame_s=mel_cfg.frame_seconds, scores=det.scores,
                      highlight=det.highlight,
                      title=f"{Path(path).name}  ({det.model})")


def _table(rows: list[dict]) -> None:
    head = f"{'file':<40} {'start':>8} {'end':>8} {'score':>7}  model"
    print(head)
    print("-" * len(head))
    for r in rows:
        name = Path(r["path"]).name[:40]
        if "error" in r:
            print(f"{name:<40} error: {r['error']}")
        else:
            print(f"{name:<40} {_mmss(r['start_s']):>8} {_mmss(r['end_s']):>8} "
                  f"{r['score']:>7.3f}  {r['model']}")


def _mmss(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"
