#!/usr/bin/env python3
"""Command line: generate a licence-clean training (or heldout) dataset for latentd's model.

    python3 tools/train/make_dataset.py --out DIR --clips N --seconds 8 --seed S --jobs 2 [--heldout] [--without-drums style|sparse|held] [--stats]

Writes DIR/clips/NNNNN.wav, DIR/events/NNNNN.json, DIR/clips.jsonl, DIR/tags.txt,
DIR/brightness.json and DIR/PROVENANCE.md (see tools/train/README.md). Bad arguments:
one line on stderr, exit 2.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from data.composer import WITHOUT_DRUMS  # noqa: E402
from data.dataset import DEFAULT_SOUNDFONTS, make_dataset, tag_stats  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--clips", type=int, default=600, help="number of clips (2 renderings per composition)")
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length in seconds")
    ap.add_argument("--seed", type=int, default=1, help="base seed (0 .. 65535)")
    ap.add_argument("--jobs", type=int, default=2, help="rendering processes")
    ap.add_argument("--heldout", action="store_true", help="use the heldout seed space (never in training)")
    ap.add_argument("--soundfont", action="append", help=f"soundfont path (repeatable; default {DEFAULT_SOUNDFONTS})")
    ap.add_argument("--brightness-from", help="take the bright/dark thresholds from this dataset's brightness.json")
    arrangement = ap.add_mutually_exclusive_group()
    arrangement.add_argument("--without-drums", choices=list(WITHOUT_DRUMS), default="style",
                             help="how the clips without drums are arranged: "
                                  + "; ".join(f"{k}: {v}" for k, v in WITHOUT_DRUMS.items()))
    arrangement.add_argument("--sparse-without-drums", dest="without_drums", action="store_const",
                             const="sparse", help="the same as --without-drums sparse")
    ap.add_argument("--stats", action="store_true", help="print the count per tag at the end")
    args = ap.parse_args()
    if args.clips < 1 or args.seconds <= 0 or args.seconds > 600 or args.jobs < 1:
        print("make_dataset: --clips and --jobs must be >= 1, --seconds in (0, 600]", file=sys.stderr)
        return 2
    try:
        summary = make_dataset(args.out, args.clips, args.seconds, args.seed, args.jobs, args.heldout,
                               args.soundfont, args.brightness_from,
                               without_drums=args.without_drums)
    except (ValueError, OSError) as e:
        print(f"make_dataset: {e}", file=sys.stderr)
        return 2
    print(f"make_dataset: {args.clips} clips in {args.out} ({summary['elapsed']:.1f} s)")
    if args.stats:
        print(tag_stats(summary["records"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
