"""``wholebody-export``: the crop model of a checkpoint as an ONNX file, checked in ONNX Runtime.

    wholebody-export ckpt=last.ckpt                                  # -> last.onnx, dynamic batch
    wholebody-export ckpt=last.ckpt output=zoomnet_b8.onnx batch_size=8 flip_test=true

The graph (uint8 crops -> heatmaps and the RoIs used) is described in docs/inference.md. With
``check=true`` (default) the export runs in ONNX Runtime on rendered synthetic person crops and the
largest differences from PyTorch are printed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from wholebody.cli.errors import run_or_exit
from wholebody.cli.predict import require

CONFIG_PATH = "pkg://wholebody.conf"
log = logging.getLogger("wholebody.export")


def run(cfg: DictConfig) -> int:
    from wholebody.inference.checkpoint import InferenceError, load_checkpoint
    from wholebody.inference.export import check_crops, compare_with_pytorch, export_onnx
    from wholebody.inference.onnx_runner import OnnxRunner

    require(cfg, ("ckpt",), "wholebody-export ckpt=last.ckpt")
    if cfg.format != "onnx":
        raise InferenceError(f"format={cfg.format}: only onnx is offered")
    ckpt = Path(str(cfg.ckpt))
    out = Path(str(cfg.output)) if cfg.output else ckpt.with_suffix(".onnx")
    net, info = load_checkpoint(ckpt)
    flip = info.flip_test if cfg.flip_test is None else bool(cfg.flip_test)
    batch = None if cfg.batch_size in (None, "dynamic") else int(cfg.batch_size)
    report = export_onnx(net, info, out, batch_size=batch, flip_test=flip, opset=int(cfg.opset),
                         overwrite=bool(cfg.overwrite))
    kind = f"static batch {batch}" if batch else "dynamic batch"
    print(f"wrote {report.path} ({type(net).__name__}, {info.input_size[0]}x{info.input_size[1]} crops, {kind}, "
          f"flip_test={flip}; {report.seconds:.1f} s)")
    print(f"outputs: {', '.join(report.outputs)}")
    if cfg.check:
        runner = OnnxRunner(report.path)
        crops = check_crops(info.input_size, batch or int(cfg.check_batch))
        diffs = compare_with_pytorch(net, runner, crops)
        print(f"ONNX Runtime vs PyTorch on {crops.shape[0]} synthetic person crops, max abs difference:")
        for k, v in diffs.items():
            print(f"  {k:<32} {v:.3g}")
    return 0


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
