"""ONNX export of the crop model (running it in ONNX Runtime: :mod:`wholebody.inference.onnx_runner`).

The exported graph is the network's forward pass on person crops, normalisation included:

    input   images            uint8 (B, 3, H, W) RGB crops (``person_crops`` makes them)
    outputs the network's output tensors, by name. For ZoomNet:
            body_heatmaps     (B, 38, h, w)   23 body+foot keypoints, then 3 part boxes x 5 box points
            face_heatmaps     (B, 68, S, S)   in the frame of the face RoI
            lefthand_heatmaps, righthand_heatmaps (B, 21, S, S) in their RoIs' frames
            part_boxes        (B, 3, 4)       the RoIs used (square, crop px, xyxy)
            body_boxes        (B, 3, 4)       BodyNet's tight part boxes (crop px)
            body_box_scores   (B, 3)
            (HRNetPose: heatmaps (B, K, h, w))

so the box decoding that picks the RoIs and the RoIAlign zoom are inside the graph; heatmap decoding
(argmax + sub-pixel refinement) and the map back to the image stay outside, in
``WholeBodyEstimator`` (they are a few cheap tensor ops, and keeping them out keeps the refinement a
run-time choice). With ``flip_test=True`` the graph also runs the mirrored pass (with the mirrored
RoIs of the first pass) and returns the averaged maps, exactly what ``net.predict(flip_test=True)``
decodes. The batch is dynamic (any B >= 1) or static (``batch_size=N``; the runner pads shorter
batches). The file's metadata (``wholebody`` key, JSON) holds the model config, input size, refine,
flip test, output names and batch, so ``WholeBodyEstimator.from_onnx(path)`` needs nothing else.

Export uses ``torch.onnx.export(..., dynamo=True)`` (the TorchScript exporter cannot export ZoomNet).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wholebody.inference.checkpoint import CheckpointInfo, InferenceError
from wholebody.inference.onnx_runner import INPUT_NAME, META_KEY, OnnxRunner
from wholebody.io_utils import atomic_target

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class CropModel(nn.Module):
    """The exported module: uint8 crops -> the network's output tensors (in ``names`` order),
    optionally averaged with the mirrored pass (a :class:`~wholebody.models.network.PoseNetwork`'s
    ``flipped_pass`` and ``average_flipped``: ZoomNet, HRNetPose)."""

    def __init__(self, net: nn.Module, names: Sequence[str], flip_test: bool = False) -> None:
        super().__init__()
        if flip_test and not hasattr(net, "average_flipped"):
            raise InferenceError(f"flip_test export needs a network with a flip test; {type(net).__name__} has no "
                                 "average_flipped: export with flip_test=false")
        self.net = net
        self.names = tuple(names)
        self.flip_test = bool(flip_test)

    def forward(self, images: torch.Tensor, rois: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``rois``: force these RoIs (parity checks; not part of the exported graph)."""
        out = self.net(images) if rois is None else self.net(images, rois=rois)
        if self.flip_test:  # the network's own mirrored pass (ZoomNet: with the first pass's RoIs mirrored)
            out = self.net.average_flipped(out, self.net.flipped_pass(images, out))
        return tuple(out[k] for k in self.names)


def output_names(net: nn.Module, input_size: Sequence[int]) -> list[str]:
    """Names of the tensors the network's forward returns (a probe on one blank crop)."""
    w, h = int(input_size[0]), int(input_size[1])
    with torch.no_grad():
        out = net(torch.zeros(1, 3, h, w, dtype=torch.uint8))
    return [k for k, v in out.items() if isinstance(v, torch.Tensor)]


@dataclass
class ExportReport:
    path: Path
    outputs: list[str]
    batch_size: int | None
    flip_test: bool
    seconds: float
    parity: dict[str, float] | None = None


def export_onnx(
    net: nn.Module,
    info: CheckpointInfo,
    path: str | Path,
    *,
    batch_size: int | None = None,
    flip_test: bool = False,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> ExportReport:
    """Export the crop model of ``net`` to ``path`` (atomically; an existing file only with ``overwrite``).

    Args:
        net: the network (eval mode is set); info: its checkpoint info (model config etc.).
        batch_size: ``None``: dynamic batch; N: static batch N.
        flip_test: include the flipped pass (see the module docstring).
    """
    import time

    import onnx

    path = Path(path)
    if path.exists() and not overwrite:
        raise InferenceError(f"{path} exists; pass overwrite=true to replace it")
    if batch_size is not None and batch_size < 1:
        raise InferenceError(f"batch_size must be >= 1 or null (dynamic), got {batch_size}")
    net = net.eval().cpu()
    w, h = info.input_size
    names = output_names(net, (w, h))
    model = CropModel(net, names, flip_test).eval()
    b = batch_size or 2
    example = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    dynamic = None if batch_size else {"images": {0: torch.export.Dim("batch", min=1, max=4096)}}
    t0 = time.perf_counter()
    import warnings

    with atomic_target(path) as tmp:
        with warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
            # onnxscript notes that RoIAlign's adaptive sampling (-1) is written as ONNX's 0, which is the same thing
            warnings.filterwarnings("ignore", message=".*RoIAlign with a non-zero sampling_ratio.*")
            program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=names,
                                        dynamic_shapes=dynamic, opset_version=opset, dynamo=True, verbose=False)
        proto = program.model_proto
        meta = {
            "model_config": info.model_config,
            "input_size": [int(w), int(h)],
            "refine": info.refine,
            "flip_test": bool(flip_test),
            "net_class": info.net_class,
            "outputs": names,
            "batch_size": batch_size,
            "source": Path(info.path).name,
            "torch": torch.__version__,
        }
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save_model(proto, str(tmp))
    return ExportReport(path=path, outputs=names, batch_size=batch_size, flip_test=flip_test,
                        seconds=time.perf_counter() - t0)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's graph passes log every rewrite at INFO; keep only their warnings."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@torch.no_grad()
def compare_with_pytorch(net: nn.Module, runner: OnnxRunner, images: torch.Tensor) -> dict[str, float]:
    """Max abs differences between ONNX Runtime and PyTorch eager on the same uint8 crops.

    Returns ``<output>``: end-to-end difference of each output; for networks with RoIs also
    ``<part>_heatmaps@same_rois``: the part heatmaps of PyTorch run with ONNX Runtime's RoIs. The
    two differ when the RoIs do: the RoIs come from a float32 box fit that two runtimes round
    differently (0.001-0.03 px on an untrained network's noisy maps), and a part heatmap moves
    with its RoI; the same-RoI figure isolates the heatmap computation itself.
    """
    net = net.eval().cpu()
    ort_out = runner(images)
    model = CropModel(net, runner.names, bool(runner.metadata.get("flip_test")))
    ref = dict(zip(runner.names, model(images)))
    diffs = {k: float((ort_out[k].float() - ref[k].float()).abs().max()) for k in runner.names}
    if "part_boxes" in ort_out:
        same = dict(zip(runner.names, model(images, rois=ort_out["part_boxes"])))
        for k in runner.names:
            if k.endswith("_heatmaps") and k != "body_heatmaps":
                diffs[f"{k}@same_rois"] = float((ort_out[k] - same[k]).abs().max())
    return diffs


def check_crops(input_size: Sequence[int], n: int = 2, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 person crops (n, 3, H, W) cut from rendered synthetic images (the demo preset), for
    checking an export on inputs that look like people rather than noise."""
    from wholebody.data.synthetic import PRESETS, render_image
    from wholebody.geometry import xywh_to_xyxy
    from wholebody.inference.crops import check_boxes, person_crops

    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    while len(crops) < n:
        image, anns, _ = render_image(rng, PRESETS["demo"])
        people = [a for a in anns if not a.get("iscrowd") and a["bbox"][2] > 1 and a["bbox"][3] > 1]
        if not people:
            continue
        boxes = check_boxes(xywh_to_xyxy(np.array([a["bbox"] for a in people])), (image.shape[1], image.shape[0]))
        c, _ = person_crops(image, boxes, input_size)
        crops.extend(c)
    return torch.from_numpy(np.stack(crops[:n])).permute(0, 3, 1, 2).contiguous()
