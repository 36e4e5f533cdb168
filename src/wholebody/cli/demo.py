"""``make demo`` / ``wholebody-demo``: the main job on the embedded default, end to end on the CPU.

Renders the synthetic COCO-WholeBody set (demo preset) when absent, trains ``zoomnet_tiny`` on it,
evaluates on its val split with the official protocol, and leaves in ``outputs/demo/``:

* ``stats.json``  - six parts x ten stats, the evaluator's JSON shape;
* ``results.json`` - the COCO-WholeBody results rows of the val split;
* ``checkpoints/`` - ``last.ckpt`` and the best one;
* ``overlays/``   - val images with the predicted skeletons and part boxes drawn.

Extra arguments are Hydra overrides on top of ``+experiment=demo``, e.g.
``wholebody-demo trainer.max_epochs=2`` for a quick look.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np


def write_overlays(results_file: Path, image_path, out_dir: Path, max_images: int = 12, score_thr: float = 0.3) -> list[Path]:
    """Draw the rows of ``results_file`` on their images (first ``max_images`` image ids) into ``out_dir``."""
    import cv2
    import orjson

    from wholebody.io_utils import write_bytes_atomic
    from wholebody.viz import draw_results

    rows = orjson.loads(results_file.read_bytes())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id, drawn in draw_results(rows, image_path, max_images, score_thr):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(drawn[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if ok:
            written.append(write_bytes_atomic(out_dir / f"{image_id:012d}.jpg", buf.tobytes()))
    return written


def main(argv: list[str] | None = None) -> int:
    from wholebody.cli.errors import run_or_exit
    from wholebody.evaluation.metric_names import metric_name
    from wholebody.keypoints import EVAL_PARTS
    from wholebody.training.run import build_datamodule, compose_config, train

    args = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = ["+experiment=demo", *args]
    cfg = compose_config(overrides)
    run_dir = Path(cfg.paths.run_dir)
    t0 = time.perf_counter()
    metrics = run_or_exit(train, cfg)
    datamodule = build_datamodule(cfg, stage="validate")
    overlays = write_overlays(run_dir / "results.json", datamodule.image_path, run_dir / "overlays")
    minutes = (time.perf_counter() - t0) / 60
    aps = "  ".join(f"{p} {metrics.get(metric_name(p, 'AP'), float('nan')):.3f}"
                    for p in EVAL_PARTS)
    print(f"\ndemo finished in {minutes:.1f} min. AP: {aps}")
    print(f"  stats:    {run_dir / 'stats.json'}\n  results:  {run_dir / 'results.json'}")
    print(f"  weights:  {run_dir / 'checkpoints'}\n  overlays: {run_dir / 'overlays'} ({len(overlays)} images)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
