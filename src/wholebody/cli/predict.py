"""``wholebody-predict``: whole-body poses of the people in images, a folder or a video.

    wholebody-predict ckpt=last.ckpt input=photo.jpg output=out/ detector.weights=fasterrcnn.pth
    wholebody-predict ckpt=last.ckpt input=val2017/ output=out/ boxes=person_detections.json
    wholebody-predict ckpt=last.ckpt input=val2017/ output=out/ boxes=coco_wholebody_val_v1.0.json
    wholebody-predict ckpt=model.onnx input=clip.mp4 output=out/ boxes=full

Options are Hydra ``key=value`` overrides of ``conf/predict.yaml`` (``--cfg job`` prints them all).
Expected problems (missing or foreign checkpoint, no inputs, existing outputs, bad box files, no
detector weights) end with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from wholebody.cli.errors import run_or_exit

CONFIG_PATH = "pkg://wholebody.conf"
log = logging.getLogger("wholebody.predict")


def build_estimator(cfg: DictConfig):
    """The estimator of ``cfg.ckpt`` (.ckpt: PyTorch; .onnx: ONNX Runtime) with the run's settings."""
    import torch

    from wholebody.inference.estimator import WholeBodyEstimator

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    common = dict(refine=cfg.refine, flip_test=cfg.flip_test, padding=float(cfg.padding),
                  batch_size=int(cfg.batch_size), keypoint_threshold=float(cfg.keypoint_threshold),
                  score_mode=str(cfg.score_mode))
    if Path(str(cfg.ckpt)).suffix.lower() == ".onnx":
        gpu = str(cfg.device).startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else None
        return WholeBodyEstimator.from_onnx(cfg.ckpt, threads=cfg.get("threads"), providers=providers, **common)
    return WholeBodyEstimator.from_checkpoint(cfg.ckpt, device=cfg.device, **common)


def build_detector(cfg: DictConfig):
    """The person detector of ``cfg.detector`` (Hydra ``_target_``), its constructor's error unwrapped."""
    from hydra.utils import instantiate

    from wholebody.inference.checkpoint import InferenceError

    try:
        return instantiate(cfg.detector)
    except Exception as e:  # Hydra wraps constructor errors; report the cause itself
        cause = e.__cause__ if e.__cause__ is not None else e
        if isinstance(cause, InferenceError):
            raise cause from None
        raise


def require(cfg: DictConfig, keys: tuple[str, ...], example: str) -> None:
    """A one-line error naming the first required option that was not given."""
    from wholebody.inference.checkpoint import InferenceError

    for key in keys:
        if OmegaConf.is_missing(cfg, key):
            raise InferenceError(f"{key}= is required, e.g. {example}")


def run(cfg: DictConfig) -> int:
    from wholebody.inference.io import check_output_folder
    from wholebody.inference.pipeline import predict

    require(cfg, ("ckpt", "input", "output"), "wholebody-predict ckpt=last.ckpt input=photos/ output=out/ boxes=full")
    check_output_folder(cfg.output)  # an existing file as output=: one line before the checkpoint is read
    estimator = build_estimator(cfg)
    detector = build_detector(cfg) if cfg.boxes == "detector" else None
    log.info("estimator: %s", ", ".join(f"{k}={v}" for k, v in estimator.describe().items()))
    settings = OmegaConf.to_container(cfg, resolve=True)
    report = predict(
        estimator, cfg.input, cfg.output, boxes=str(cfg.boxes), detector=detector, ann=cfg.ann,
        det_score_thr=float(cfg.det_score_thr), min_box_size=float(cfg.min_box_size), overlay=bool(cfg.overlay),
        score_thr=float(cfg.score_thr), overwrite=bool(cfg.overwrite), recursive=bool(cfg.recursive),
        video_stride=int(cfg.video_stride), max_frames=cfg.max_frames, progress=bool(cfg.progress),
        nms_thr=float(cfg.nms_thr) if cfg.nms_thr else None, settings=settings,
        max_image_pixels=cfg.get("max_image_pixels"),
    )
    print(report.summary_line())
    if report.dropped_boxes:
        print(f"{report.dropped_boxes} person boxes smaller than {cfg.min_box_size} px inside their image were dropped")
    if report.skipped:
        print(f"skipped {len(report.skipped)} input(s):")
        for path, why in report.skipped:
            print(f"  {path}: {why}")
    print(f"outputs in {cfg.output}")
    return 0


@hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
