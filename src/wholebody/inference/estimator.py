"""WholeBodyEstimator: a trained network -> 133 keypoints and part boxes per person, in image px.

    est = WholeBodyEstimator.from_checkpoint("last.ckpt")        # or .from_onnx("model.onnx")
    poses = est(image_rgb, boxes=[[x1, y1, x2, y2], ...])        # boxes="full": the whole image
    poses.keypoints      # (N, 133, 3) image px + score
    poses.part_boxes     # (N, 3, 4) xyxy image px: face, left hand, right hand
    poses.rows(image_id) # COCO-WholeBody results rows (what wholebody-eval reads)

Each person is cropped exactly as validation crops it (:func:`~wholebody.inference.crops.person_crops`:
the box, clipped to the image, grown to the input aspect ratio and by ``padding``, one affine warp; the
data pipeline's functions), all crops of a call run through the network in batches of ``batch_size``, and the
decoded keypoints are mapped back with :func:`wholebody.models.postprocess.to_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wholebody.evaluation.nms import oks_nms
from wholebody.images import read_image
from wholebody.inference.checkpoint import CheckpointInfo, InferenceError, load_checkpoint
from wholebody.inference.crops import check_boxes, person_crops
from wholebody.keypoints import BOX_PARTS, COCO_WHOLEBODY
from wholebody.models.postprocess import check_score_mode, part_scores, result_rows, to_image

#: Person-key fields a results row may carry (see ``wholebody.evaluation.distributed``).
ID_FIELDS = ("ann_id", "bbox_id")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"device={device}: CUDA is not available here (use device=cpu or device=auto)")
    return d


@dataclass
class PoseResult:
    """The persons of one image (N of them), image px.

    Attributes:
        keypoints: (N, 133, 3) x, y + score (the heatmap peak).
        part_boxes: (N, 3, 4) xyxy face / left hand / right hand (zeros: the model predicts none).
        part_box_scores: (N, 3) the network's confidence in each part box.
        person_boxes: (N, 4) xyxy, the (clipped) boxes the crops were made from.
        person_scores: (N,) the person boxes' scores (1 for given boxes without scores).
        keypoint_threshold: used by :meth:`scores` and :meth:`rows` (the usual top-down rescoring).
        crop_areas: (N,) the areas of the crop regions (image px^2; the area OKS-NMS uses), or None.
        score_mode: ``per_part`` | ``mmpose``, the scores of :meth:`scores` and :meth:`rows`
            (see :mod:`wholebody.models.postprocess`).
    """

    keypoints: np.ndarray
    part_boxes: np.ndarray
    part_box_scores: np.ndarray
    person_boxes: np.ndarray
    person_scores: np.ndarray
    keypoint_threshold: float = 0.2
    crop_areas: np.ndarray | None = None
    score_mode: str = "per_part"

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @classmethod
    def empty(cls, keypoint_threshold: float = 0.2, score_mode: str = "per_part") -> PoseResult:
        k = COCO_WHOLEBODY.num_keypoints
        return cls(np.zeros((0, k, 3)), np.zeros((0, len(BOX_PARTS), 4)), np.zeros((0, len(BOX_PARTS))),
                   np.zeros((0, 4)), np.zeros(0), keypoint_threshold, np.zeros(0), score_mode)

    def scores(self) -> dict[str, np.ndarray]:
        """Per part (body, foot, face, lefthand, righthand, wholebody): (N,) person score x mean keypoint score."""
        return part_scores(self.keypoints[..., 2], self.person_scores, self.keypoint_threshold, self.score_mode)

    def select(self, index: np.ndarray) -> PoseResult:
        """The persons ``index`` (int array or bool mask), in that order."""
        return PoseResult(self.keypoints[index], self.part_boxes[index], self.part_box_scores[index],
                          self.person_boxes[index], self.person_scores[index], self.keypoint_threshold,
                          None if self.crop_areas is None else self.crop_areas[index], self.score_mode)

    def nms_keep(self, thr: float | None = 0.9) -> np.ndarray:
        """Indices (ascending) of the persons OKS-NMS keeps (:func:`wholebody.evaluation.nms.oks_nms`: 133
        keypoints, the crop areas, ordered by the whole-body score); all of them when ``thr`` is 0/None."""
        if not thr or len(self) < 2:
            return np.arange(len(self))
        if self.crop_areas is None:
            raise ValueError("OKS-NMS needs the persons' crop areas (PoseResult.crop_areas)")
        keep = oks_nms(self.keypoints, self.scores()["wholebody"], self.crop_areas, COCO_WHOLEBODY.sigmas_array,
                       float(thr))
        return np.sort(keep)

    def part_boxes_with_scores(self) -> np.ndarray:
        """(N, 3, 5) xyxy + score (person score x box confidence), the layout ``draw_wholebody`` takes."""
        return np.concatenate([self.part_boxes, (self.part_box_scores * self.person_scores[:, None])[..., None]], -1)

    def rows(self, image_id: int, ids: Sequence[int] | None = None, id_field: str = "bbox_id") -> list[dict[str, Any]]:
        """COCO-WholeBody results rows (``wholebody-eval``'s input) of these persons.

        Args:
            image_id: the image's id in the ground truth.
            ids: optional person key per person: the annotation id (``id_field="ann_id"``) or the index
                of the box in its detection file (``"bbox_id"``).
        """
        if id_field not in ID_FIELDS:
            raise ValueError(f"id_field must be one of {ID_FIELDS}, got {id_field!r}")
        n = len(self)
        key = np.asarray(ids if ids is not None else np.full(n, -1), dtype=np.int64).reshape(n)
        res = {"keypoints": self.keypoints, "part_boxes": self.part_boxes, "part_box_scores": self.part_box_scores,
               "image_id": np.full(n, int(image_id)), "box_score": self.person_scores, id_field: key}
        if self.crop_areas is not None:
            res["crop_area"] = self.crop_areas
        return result_rows(res, keypoint_threshold=self.keypoint_threshold, score_mode=self.score_mode)

    def draw(self, image_rgb: np.ndarray, score_thr: float = 0.3, person_boxes: bool = True,
             labels: Sequence[str] | None = None) -> np.ndarray:
        """These persons drawn on a copy of ``image_rgb`` (H, W, 3) with :func:`wholebody.viz.draw_wholebody`."""
        from wholebody.viz import draw_wholebody

        return draw_wholebody(image_rgb, self.keypoints, self.part_boxes_with_scores(),
                              self.person_boxes if person_boxes else None, score_thr=score_thr, labels=labels)


class WholeBodyEstimator:
    """Top-down whole-body pose estimation with a network of this package (or its ONNX export).

    Args:
        net: the network (``ZoomNet``, ``HRNetPose``); used for its forward pass, or only for
            ``decode`` when ``runner`` is given.
        input_size: (W, H) of the network's crops.
        refine: heatmap sub-pixel refinement (``none`` | ``quarter`` | ``dark``).
        flip_test: average with the horizontally flipped pass.
        padding: crop region = person box grown to the input aspect ratio, times this (training's 1.25).
        batch_size: crops per forward call (all persons of a call are batched across images).
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        detector: person detector used when ``boxes`` is not given (a callable image_rgb -> (boxes, scores),
            e.g. :class:`~wholebody.inference.detector.PersonDetector`).
        keypoint_threshold: keypoint score above which a keypoint counts in the part scores.
        score_mode: ``per_part`` | ``mmpose``: the results' scores (see :mod:`wholebody.models.postprocess`).
        runner: replaces the network's forward pass: uint8 crops (B, 3, H, W) -> the outputs dict
            (e.g. :class:`~wholebody.inference.onnx_runner.OnnxRunner`); flip testing is then the runner's.
    """

    def __init__(
        self,
        net: nn.Module,
        input_size: Sequence[int],
        *,
        refine: str = "quarter",
        flip_test: bool = False,
        padding: float = 1.25,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        detector: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
        keypoint_threshold: float = 0.2,
        score_mode: str = "per_part",
        runner: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
        info: CheckpointInfo | None = None,
    ) -> None:
        if refine not in ("none", "quarter", "dark"):
            raise InferenceError(f"refine must be none, quarter or dark, got {refine!r}")
        if batch_size < 1:
            raise InferenceError(f"batch_size must be >= 1, got {batch_size}")
        if padding <= 0:
            raise InferenceError(f"padding must be > 0, got {padding}")
        self.device = resolve_device(device) if runner is None else torch.device("cpu")
        self.net = net.eval().to(self.device)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.refine = refine
        self.flip_test = bool(flip_test)
        self.padding = float(padding)
        self.batch_size = int(batch_size)
        self.detector = detector
        self.keypoint_threshold = float(keypoint_threshold)
        try:
            self.score_mode = check_score_mode(score_mode)
        except ValueError as e:
            raise InferenceError(str(e)) from None
        self.runner = runner
        self.info = info

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, refine: str | None = None, flip_test: bool | None = None, **kwargs: Any
    ) -> WholeBodyEstimator:
        """An estimator of a training checkpoint (``.ckpt``); ``refine``/``flip_test`` default to the
        checkpoint's settings, other keyword arguments as in the constructor."""
        net, info = load_checkpoint(path)
        return cls(net, info.input_size, refine=refine or info.refine,
                   flip_test=info.flip_test if flip_test is None else flip_test, info=info, **kwargs)

    @classmethod
    def from_onnx(cls, path: str | Path, *, refine: str | None = None, flip_test: bool | None = None,
                  threads: int | None = None, providers: Sequence[str] | None = None, **kwargs: Any) -> WholeBodyEstimator:
        """An estimator running an exported crop model (``wholebody-export``) in ONNX Runtime.

        The flip test is part of the exported graph (``flip_test`` can only confirm it). The network
        object is rebuilt from the file's metadata for decoding only (its weights are not used).
        """
        from wholebody.inference.checkpoint import build_net
        from wholebody.inference.onnx_runner import OnnxRunner

        runner = OnnxRunner(path, threads=threads, providers=providers)
        info = runner.info  # the metadata, its model config checked against the allow-list
        if flip_test is not None and bool(flip_test) != info.flip_test:
            raise InferenceError(f"{path} was exported with flip_test={info.flip_test}; export again with "
                                 f"flip_test={bool(flip_test)} to change it")
        net = build_net(info.model_config)
        return cls(net, info.input_size, refine=refine or info.refine, flip_test=info.flip_test, runner=runner,
                   info=info, **kwargs)

    # ------------------------------------------------------------------ the network on crops
    @torch.no_grad()
    def predict_crops(self, crops: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Decoded predictions of crops, in batches of ``batch_size``.

        Args:
            crops: (M, 3, H, W) uint8 RGB (tensor or array) at ``input_size``.
        Returns:
            numpy: ``keypoints`` (M, 133, 3) crop px + score, ``part_boxes`` (M, 3, 4) xyxy crop px,
            ``part_box_scores`` (M, 3).
        """
        x = torch.as_tensor(crops)
        w, h = self.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, h, w):
            raise ValueError(f"crops must be (M, 3, {h}, {w}), got {tuple(x.shape)}")
        parts: dict[str, list[np.ndarray]] = {"keypoints": [], "part_boxes": [], "part_box_scores": []}
        for s in range(0, x.shape[0], self.batch_size):
            chunk = x[s: s + self.batch_size]
            if self.runner is None:
                decoded = self.net.predict(chunk.to(self.device), flip_test=self.flip_test, refine=self.refine)
            else:
                decoded = self.net.decode(self.runner(chunk), refine=self.refine)
            for k in parts:
                parts[k].append(decoded[k].float().cpu().numpy())
        if not parts["keypoints"]:
            k = COCO_WHOLEBODY.num_keypoints
            return {"keypoints": np.zeros((0, k, 3), np.float32), "part_boxes": np.zeros((0, len(BOX_PARTS), 4), np.float32),
                    "part_box_scores": np.zeros((0, len(BOX_PARTS)), np.float32)}
        out = {k: np.concatenate(v) for k, v in parts.items()}
        if not (np.isfinite(out["keypoints"]).all() and np.isfinite(out["part_boxes"]).all()):
            raise InferenceError("the network produced NaN or infinite keypoints: its weights are damaged or "
                                 "do not suit these inputs")
        return out

    # ------------------------------------------------------------------ images
    @staticmethod
    def _image(image: np.ndarray | str | Path, bgr: bool) -> tuple[np.ndarray, bool]:
        if isinstance(image, (str, Path)):
            return read_image(str(image)), True  # BGR
        if isinstance(image, torch.Tensor):
            image = image.cpu().numpy()
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got {img.dtype} {img.shape}")
        return img, bgr

    def _boxes(self, image: np.ndarray, img_bgr: bool, boxes: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        if isinstance(boxes, str):
            if boxes != "full":
                raise ValueError(f"boxes must be an (N, 4) array, 'full' or None, got {boxes!r}")
            return np.array([[0.0, 0.0, w, h]]), np.ones(1)
        if boxes is None:
            if self.detector is None:
                raise InferenceError("no person boxes: pass boxes=(N, 4) xyxy image px, boxes='full' (the whole "
                                     "image is one person), or build the estimator with a detector")
            boxes, scores = self.detector(image[:, :, ::-1] if img_bgr else image)
        b = check_boxes(boxes, (w, h))
        s = np.ones(len(b)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.shape[0] != b.shape[0]:
            raise ValueError(f"{b.shape[0]} boxes but {s.shape[0]} scores")
        return b, s

    def estimate_many(
        self,
        images: Sequence[np.ndarray | str | Path],
        boxes: Sequence[Any] | None = None,
        scores: Sequence[Any] | None = None,
        *,
        bgr: bool = False,
    ) -> list[PoseResult]:
        """Poses of several images; every person of every image goes through the network in shared batches.

        Args:
            images: (H, W, 3) uint8 arrays (RGB, or BGR with ``bgr=True``) or image file paths.
            boxes: per image, (N_i, 4) xyxy image px, ``"full"`` or ``None`` (the detector's).
            scores: per image, optional (N_i,) person box scores (default 1).
        """
        boxes = [None] * len(images) if boxes is None else list(boxes)
        scores = [None] * len(images) if scores is None else list(scores)
        if not len(images) == len(boxes) == len(scores):
            raise ValueError(f"{len(images)} images, {len(boxes)} box sets and {len(scores)} score sets")
        crops, metas, kept = [], [], []
        for img, bx, sc in zip(images, boxes, scores):
            arr, is_bgr = self._image(img, bgr)
            b, s = self._boxes(arr, is_bgr, bx, sc)
            c, meta = person_crops(arr, b, self.input_size, self.padding, bgr=is_bgr)
            crops.append(c)
            metas.append(meta)
            kept.append((b, s))
        all_crops = torch.from_numpy(np.concatenate(crops)).permute(0, 3, 1, 2).contiguous()
        decoded = self.predict_crops(all_crops)
        out, start = [], 0
        for meta, (b, s) in zip(metas, kept):
            n = len(b)
            if n == 0:
                out.append(PoseResult.empty(self.keypoint_threshold, self.score_mode))
                continue
            sl = slice(start, start + n)
            start += n
            mapped = to_image({k: v[sl] for k, v in decoded.items()}, {**meta, "image_id": np.zeros(n, np.int64)},
                              self.input_size)
            out.append(PoseResult(mapped["keypoints"], mapped["part_boxes"], mapped["part_box_scores"], b, s,
                                  self.keypoint_threshold, mapped["crop_area"], self.score_mode))
        return out

    def __call__(self, image: np.ndarray | str | Path, boxes: Any = None, scores: Any = None, *, bgr: bool = False) -> PoseResult:
        """Poses of the persons of one image.

        Args:
            image: (H, W, 3) uint8 RGB array (BGR with ``bgr=True``) or an image file path.
            boxes: (N, 4) xyxy image px person boxes; ``"full"``: the whole image is one person;
                ``None``: the estimator's detector finds them (an error without one).
            scores: optional (N,) person box scores (they scale the result scores; default 1).
        """
        return self.estimate_many([image], [boxes], [scores], bgr=bgr)[0]

    def describe(self) -> Mapping[str, Any]:
        """Settings, for logs: network class, input size, refine, flip test, padding, device, backend."""
        return {"net": type(self.net).__name__, "input_size": list(self.input_size), "refine": self.refine,
                "flip_test": self.flip_test, "padding": self.padding, "batch_size": self.batch_size,
                "score_mode": self.score_mode,
                "device": str(self.device), "backend": "onnxruntime" if self.runner is not None else "pytorch"}
