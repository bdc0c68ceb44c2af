"""`sea synth`: a deterministic SONYC-like corpus.

The command line of :func:`sea_core.synth.synthesize` (layout: :mod:`sea_core.synth`).
"""
from __future__ import annotations

import argparse
import dataclasses

from sea_core.params import SYNTH
from sea_core.synth.corpus import synthesize

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """`sea synth --out DIR [...]`: generate the corpus, print a summary, return 0."""
    d = SYNTH
    ap = argparse.ArgumentParser(prog="sea synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--sensors", type=int, default=d.sensors, help="upstream sensors (%(default)s)")
    ap.add_argument("--days", type=int, default=d.days, help="local days per sensor (%(default)s)")
    ap.add_argument("--clips-per-day", type=int, default=d.clips_per_day,
                    help="upstream clips per sensor and day (%(default)s)")
    ap.add_argument("--labelled-clips", type=int, default=d.labelled_clips,
                    help="downstream labelled clips (%(default)s)")
    ap.add_argument("--labelled-sensors", type=int, default=d.labelled_sensors,
                    help="sensors of the labelled set (%(default)s)")
    ap.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    ap.add_argument("--start-date", default=d.start_date, help="first local day (%(default)s)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing corpus in --out")
    ap.add_argument("--hold-out-classes", default="",
                    help="comma-separated classes absent from the upstream corpus (out-of-domain)")
    args = ap.parse_args(argv)
    params = dataclasses.replace(
        d, sensors=args.sensors, days=args.days, clips_per_day=args.clips_per_day,
        labelled_clips=args.labelled_clips, labelled_sensors=args.labelled_sensors,
        seed=args.seed, start_date=args.start_date,
        upstream_held_out=tuple(c for c in args.hold_out_classes.split(",") if c))
    s = synthesize(args.out, params, overwrite=args.overwrite)
    c = s["counts"]
    print(f"sea synth: {s['out_dir']}\n"
          f"  upstream: {c['upstream_clips']} clips from {c['upstream_sensors']} sensors "
          f"x {params.days} days (+ SPL sidecars)\n"
          f"  downstream: {c['labelled_clips']} labelled clips {c['labelled_per_split']} "
          f"split by {c['labelled_split_by']}, {c['annotation_rows']} annotation rows\n"
          f"  bytes: {s['bytes']['total']:,}   time: {s['elapsed_s']:.1f} s")
    return 0
