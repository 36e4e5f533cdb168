"""``wholebody-convert``: published weights of other projects as checkpoints of this package.

    wholebody-convert mmpose hrnet_w32_coco_wholebody_256x192-853765cd_20200918.pth hrnet_w32_256x192.ckpt
    wholebody-convert mmpose FILE.pth OUT.ckpt [--input-size 192x256] [--refine quarter|dark] [--no-flip-test]

``mmpose``: a top-down HRNet heatmap model for COCO-WholeBody (mmpose 1.x or 0.x file; W32 / W48)
becomes a checkpoint of the model config ``hrnet_wholebody_mmpose``
(:mod:`wholebody.models.pretrained_mmpose`), which ``wholebody-predict``, ``wholebody-eval-ckpt``
and ``wholebody-export`` read. The file is read with ``torch.load(weights_only=True)``; every one
of its tensors must find its place. Expected problems print one ``error: ...`` line and exit with
status 2 (``WHOLEBODY_DEBUG=1``: a traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    """``WxH``: two multiples of 32 (HRNet halves the crop down to 1/32) in 32 .. the largest crop side a
    checkpoint may store (:data:`wholebody.models.allowlist.MAX_INPUT_SIDE`; mmpose's models use 192x256
    and 288x384)."""
    from wholebody.models.allowlist import MAX_INPUT_SIDE

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give W x H, e.g. 192x256") from None
    if not all(0 < v <= MAX_INPUT_SIDE and v % 32 == 0 for v in (w, h)):
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be multiples of 32 from 32 to {MAX_INPUT_SIDE}")
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wholebody-convert", description="Published pose weights as wholebody checkpoints.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{mmpose}")
    m = sub.add_parser("mmpose", help="an mmpose top-down HRNet COCO-WholeBody .pth -> a checkpoint",
                       description="Convert an mmpose top-down HRNet heatmap checkpoint (COCO-WholeBody, 133 keypoints).")
    m.add_argument("source", help="the mmpose .pth file")
    m.add_argument("out", help="the checkpoint to write (.ckpt)")
    m.add_argument("--input-size", type=_size, metavar="WxH",
                   help="crop size W x H (default: the file name's HxW, e.g. 256x192 -> 192x256)")
    m.add_argument("--refine", choices=("quarter", "dark"), help="decoding (default: dark for *_dark files, else quarter)")
    m.add_argument("--no-flip-test", action="store_true", help="store flip_test=false as the checkpoint's default")
    m.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def convert_mmpose(source: str | Path, out: str | Path, input_size: Sequence[int] | None = None,
                   refine: str | None = None, flip_test: bool = True) -> dict:
    """Write the mmpose checkpoint ``source`` as a package checkpoint ``out``; returns what was written
    (path, layout, width, input size, refine, tensors, mapped per module)."""
    from wholebody.inference.checkpoint import build_net, load_model_config, write_checkpoint
    from wholebody.models.pretrained_mmpose import (
        MODEL_CONFIG,
        mmpose_model_config,
        place_all,
        prepare_conversion,
    )

    src = str(source)
    sd, layout, width, outputs, size, refine = prepare_conversion(src, input_size, refine)
    mc = mmpose_model_config(load_model_config(MODEL_CONFIG), width, outputs, size, refine, flip_test)
    net = build_net(mc)
    report = place_all(net, src, sd)
    path = write_checkpoint(net.eval(), out, mc)
    return {"path": str(path), "layout": layout, "width": width, "input_size": list(size), "refine": refine,
            "tensors": len(sd), "mapped": report.mapped()}


def main(argv: Sequence[str] | None = None) -> int:
    from wholebody.inference.checkpoint import InferenceError
    from wholebody.models.pretrained import PretrainedError

    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if Path(a.out).exists() and not a.overwrite:
            raise FileExistsError(f"{a.out} exists; pass --overwrite to replace it")
        r = convert_mmpose(a.source, a.out, a.input_size, a.refine, not a.no_flip_test)
    except (PretrainedError, InferenceError, FileNotFoundError, FileExistsError) as err:
        if os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    w, h = r["input_size"]
    mapped = ", ".join(f"{k} {v}" for k, v in r["mapped"].items())
    print(f"{a.source}: {r['layout']} HRNet-W{r['width']}, {r['tensors']} tensors all placed ({mapped}); "
          f"crops {w}x{h}, refine {r['refine']}, flip test {'off' if a.no_flip_test else 'on'} -> {r['path']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
