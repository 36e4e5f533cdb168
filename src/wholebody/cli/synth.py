"""``wholebody-synth OUT --images N --val-images M --seed S``: write a synthetic COCO-WholeBody set.

The output reads like the real set: ``wholebody-train data=coco_wholebody data.root=OUT``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from wholebody.data.synthetic import PRESETS, SynthConfig, generate_synthetic


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wholebody-synth",
        description="Render a synthetic COCO-WholeBody data set (drawn people with exact 133-keypoint "
        "annotations) into OUT/annotations, OUT/train2017 and OUT/val2017.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--images", type=int, default=1000, help="train images (default 1000)")
    p.add_argument("--val-images", type=int, default=100, help="val images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="the set is a pure function of seed and settings")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="knob defaults: 'default', or 'demo' (larger people, less clutter)")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="render processes (default: the CPU count, at most 8)")
    g = p.add_argument_group("knobs (override the preset)")
    g.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"))
    g.add_argument("--persons", type=int, nargs=2, metavar=("MIN", "MAX"), help="annotated people per image")
    g.add_argument("--scale-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="person height / image height")
    for f in ("invalid_part_prob", "crowd_prob", "occluder_prob", "border_prob", "back_view_prob"):
        g.add_argument("--" + f.replace("_", "-"), type=float, metavar="P")
    g.add_argument("--background-shapes", type=int, metavar="N")
    g.add_argument("--max-tilt", type=float, metavar="DEG")
    g.add_argument("--no-side-colours", dest="side_colours", action="store_false", default=None,
                   help="draw left and right limbs in the same colour")
    g.add_argument("--jpeg-quality", type=int, metavar="Q")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    knobs = {k: getattr(args, k) for k in SynthConfig.__dataclass_fields__ if hasattr(args, k)}
    try:
        cfg = SynthConfig.preset(args.preset, **knobs)
        if args.images < 0 or args.val_images < 0:
            raise ValueError("--images and --val-images must be >= 0")
    except ValueError as e:
        print(f"wholebody-synth: error: {e}", file=sys.stderr)
        return 2
    res = generate_synthetic(args.out, images=args.images, val_images=args.val_images, seed=args.seed,
                             config=cfg, workers=max(1, args.workers))
    print(f"wrote {args.images} train + {args.val_images} val images in {res['seconds']:.1f} s "
          f"({res['images_per_s']:.0f} images/s, {max(1, args.workers)} workers)")
    print(f"  {res['train']}\n  {res['val']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
