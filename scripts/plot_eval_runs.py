"""Bar chart of several ``hookstream eval --json`` results side by side (c100, c50, precision).

    python scripts/plot_eval_runs.py docs/eval/chorus/test-G-vs-H.png \\
        "piano G=docs/eval/chorus/G-test-pop909.json" "piano H=docs/eval/chorus/H-test-pop909.json" \\
        "piano energy=docs/eval/chorus/H-test-pop909.json:energy" ...

Each argument is ``LABEL=FILE[:METHOD]``; METHOD defaults to ``hookstream``.
"""

from __future__ import annotations

import argparse
import json

from models.evaluation.plots import plot_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("runs", nargs="+", metavar="LABEL=FILE[:METHOD]")
    p.add_argument("--title", default="")
    args = p.parse_args()
    summary = {}
    for spec in args.runs:
        label, sep, rest = spec.partition("=")
        if not sep:
            p.error(f"{spec!r}: expected LABEL=FILE[:METHOD]")
        path, _, method = rest.partition(":")
        with open(path) as f:
            summary[label] = json.load(f)["methods"][method or "hookstream"]
    print(plot_metrics(summary, args.out, title=args.title))


if __name__ == "__main__":
    main()
