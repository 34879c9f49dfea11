"""``hookstream data``: prepare training/evaluation data (``data pop909``)."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

ENV_POP909 = "HOOKSTREAM_POP909"
_SHARED = Path("shared/data/pop909")


def default_pop909(environ=os.environ, start: Path | None = None, *,
                   checkout: Path | None = None) -> Path:
    """Where POP909 is by default: ``$HOOKSTREAM_POP909``, else the nearest
    ``shared/data/pop909`` beside the checkout or one of the folders above it (a git
    worktree elsewhere still finds the one beside the main checkout when it is above
    the worktree), else beside the checkout (the path named in the error)."""
    if environ.get(ENV_POP909):
        return Path(environ[ENV_POP909])
    checkout = checkout or Path(__file__).resolve().parents[2]
    for folder in [checkout, *checkout.parents] + ([start, *start.parents] if start else []):
        if (folder / _SHARED / "songs.jsonl").is_file():
            return folder / _SHARED
    return checkout.parent / _SHARED


DEFAULT_POP909 = default_pop909(start=Path.cwd())


def register(sub) -> None:
    """Add the ``data`` subcommand to the CLI's subparsers ``sub``."""
    p = sub.add_parser("data", help="prepare training/evaluation data")
    dsub = p.add_subparsers(dest="dataset", required=True)
    q = dsub.add_parser("pop909", help="render POP909 MIDI songs to audio and write a manifest")
    q.add_argument(
        "--src", default=str(DEFAULT_POP909),
        help="POP909 folder with midi/, songs.jsonl, annotations.jsonl (default: "
             f"${ENV_POP909}, else the nearest shared/data/pop909 above the checkout or the "
             "current folder: %(default)s)",
    )
    q.add_argument("--out", default="data/pop909", help="output folder (default: %(default)s)")
    q.add_argument(
        "--soundfont", default=None,
        help="General MIDI .sf2 file (default: FluidR3_GM.sf2, else TimGM6mb.sf2 in /usr/share/sounds/sf2)",
    )
    q.add_argument(
        "--programs", default=None,
        help="another arrangement: General MIDI programs per track, e.g. "
             "MELODY=73,BRIDGE=48,PIANO=19; 'random' (per song, from --seed); or a preset: "
             "band, strings (default: the files' own piano)",
    )
    q.add_argument("--seed", type=int, default=0,
                   help="seed of --programs random and --transpose (default: 0)")
    q.add_argument("--transpose", type=int, default=0, metavar="N",
                   help="transpose each song by a shift drawn per song in [-N, N] semitones "
                        "(a training augmentation: the same structure in other keys; default 0)")
    q.add_argument("--annotated-only", action="store_true",
                   help="render only the songs with chorus annotations")
    q.add_argument("--splits", default=None,
                   help="render only these splits, comma-separated (train,val,test; default: all)")
    q.add_argument(
        "--jobs", type=int, default=os.cpu_count(),
        help="songs rendered in parallel (default: %(default)s)",
    )
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render POP909 and print where the manifest is, with counts per split and label."""
    from models.training.arrangement import parse_programs
    from models.training.manifest import load_manifest
    from models.training.pop909 import LABELS, render_pop909

    splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
    manifest = render_pop909(
        Path(args.src), Path(args.out), soundfont=args.soundfont, jobs=args.jobs or 1,
        programs=parse_programs(args.programs), seed=args.seed, transpose=args.transpose,
        annotated_only=args.annotated_only, splits=splits,
    )
    songs = load_manifest(manifest, label_names=LABELS)
    print(f"manifest: {manifest} ({len(songs)} songs)")
    for split in ("train", "val", "test"):
        in_split = [s for s in songs if s.split == split]
        annotated = sum(1 for s in in_split if s.chorus)
        print(f"  {split:5s} {len(in_split):4d} songs, {annotated:4d} with chorus annotations")
    labels = Counter(label for s in songs for label in s.labels)
    print("  labels: " + ", ".join(f"{name} {labels[name]}" for name in LABELS))
    return 0
