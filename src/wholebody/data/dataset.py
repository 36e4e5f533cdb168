"""TopDownDataset: one person of a :class:`~wholebody.data.coco.PersonTable` -> one sample (read, crop, augment).

One affine (:func:`wholebody.geometry.affine_matrix`) maps the image to the crop; the same matrix maps
the keypoints and the part boxes, so pixels and targets cannot disagree. A flip is part of that affine
(``x' = W - x`` about the crop); afterwards left/right keypoints are reordered by the spec's
``flip_index`` and the hand boxes swap. Photometric augmentation runs on the small crop, after the
warp.

Sample (one person; the model and training code rely on these names):

* ``image``: uint8 tensor (3, H, W), RGB, not normalised.
* ``keypoints``: float32 (K, 3): crop px and the file's visibility (> 0 means labelled; unlabelled
  points are (0, 0, 0)). Points that the crop cuts off keep their coordinates outside ``[0, W]``.
* ``part_boxes``: float32 (3, 4) xyxy crop px, face / left hand / right hand; zeros where invalid.
* ``part_valid``: bool (3,): valid in the file and overlapping the crop.
* ``meta``: dict of tensors: ``image_id`` int64, ``ann_id`` int64 (-1: detection), ``bbox_id`` int64
  (a detection's index in its file, -1 for GT persons), ``center`` float64
  (2,), ``size`` float64 (2,) (crop region w, h in image px), ``rotation`` float64 (degrees),
  ``flipped`` bool, ``score`` float32, ``area`` float32, ``image_size`` int64 (2,) (w, h).

No heatmaps: the loss encodes its targets from these keypoints and boxes on the device.

:func:`crop_to_image` / :func:`crop_boxes_to_image` map predictions back with the meta.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wholebody.data.coco import PersonRecord, PersonTable
from wholebody.data.transforms import AugmentConfig, CropParams, as_photometric, sample_crop
from wholebody.geometry import (
    affine_matrix,
    apply_affine,
    box_to_center_size,
    invert_affine,
    transform_boxes,
    warp_image,
)
from wholebody.images import ImageReadError, read_image
from wholebody.keypoints import BODY_FOOT, BOX_FLIP_INDEX, BOX_PARTS, COCO_WHOLEBODY, KeypointSpec

__all__ = ["ImageReadError", "TopDownDataset", "read_image", "warp_to_rgb"]

log = logging.getLogger(__name__)


def warp_to_rgb(image_bgr: np.ndarray, m: np.ndarray, output_size: tuple[int, int], border_bgr=(0, 0, 0)) -> np.ndarray:
    """Warp an (H, W, 3) BGR image with the image -> crop affine ``m`` into an (H', W', 3) RGB crop.

    OpenCV's bilinear warp is about twice as fast on 4-channel images as on 3-channel ones (same
    output), so images up to 16x the crop's pixel count are widened to BGRA first (the conversion
    costs far less than it saves); the final BGRA -> RGB conversion doubles as the channel swap.
    """
    w, h = output_size
    if image_bgr.shape[0] * image_bgr.shape[1] <= 16 * w * h:
        bgra = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2BGRA)
        crop = warp_image(bgra, m, (w, h), border_value=(*border_bgr, 255))
        return cv2.cvtColor(crop, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(warp_image(image_bgr, m, (w, h), border_value=tuple(border_bgr)), cv2.COLOR_BGR2RGB)


class TopDownDataset(Dataset):
    """Top-down samples of persons.

    Args:
        records: the persons: a :class:`~wholebody.data.coco.PersonTable` (``load_coco_wholebody(...).persons``,
            detections; its arrays are shared, not copied) or a sequence of :class:`PersonRecord`.
        input_size: (W, H) of the crop; default (288, 384).
        train: sample augmentation (geometric + photometric) when True; plain crops otherwise.
        augment: geometric augmentation settings (used when ``train``).
        photometric: pixel-level albumentations transforms (used when ``train``), or ``None``.
        padding: the person box is grown to the input aspect ratio, then by this factor.
        on_bad_image: ``"replace"`` (log, count, serve the next readable record) or ``"raise"``.
        max_replacements: give up after this many consecutive unreadable images.
        border_value: fill of the crop outside the image (BGR, 0..255).
        seed: seed of the augmentation generator (reseeded per DataLoader worker by
            :func:`seed_worker`).
    """

    def __init__(
        self,
        records: PersonTable | Sequence[PersonRecord],
        input_size: Sequence[int] = (288, 384),
        *,
        train: bool = False,
        augment: AugmentConfig | Mapping | None = None,
        photometric=None,
        padding: float = 1.25,
        on_bad_image: str = "replace",
        max_replacements: int = 100,
        border_value: Sequence[float] | float = 0,
        spec: KeypointSpec = COCO_WHOLEBODY,
        seed: int = 0,
    ):
        if on_bad_image not in ("replace", "raise"):
            raise ValueError(f"on_bad_image must be 'replace' or 'raise', got {on_bad_image!r}")
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"input_size must be (W, H), got {input_size}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = bool(train)
        self.augment = AugmentConfig.from_any(augment)
        self.photometric = as_photometric(photometric)
        self.padding = float(padding)
        self.on_bad_image = on_bad_image
        self.max_replacements = int(max_replacements)
        bv = tuple(float(v) for v in border_value) if isinstance(border_value, Sequence) else (float(border_value),) * 3
        if len(bv) != 3:
            raise ValueError(f"border_value must be one number or 3 (B, G, R), got {border_value}")
        self.border_value = bv
        self.spec = spec
        self._flip_index = np.asarray(spec.flip_index)
        self._table = records if isinstance(records, PersonTable) else PersonTable.from_records(records, spec.num_keypoints)
        wh = self._table.bbox[:, 2:] - self._table.bbox[:, :2]
        bad = ~(np.isfinite(self._table.bbox).all(1) & (wh > 0).all(1))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"record {i} (image_id {self._table.image_id[i]}, ann_id {self._table.ann_id[i]}) has "
                             f"no usable person box: {self._table.bbox[i].tolist()}")
        self.bad_images: Counter[str] = Counter()
        self._bad: set[int] = set()
        self._last_image: tuple[str, np.ndarray] | None = None
        self.decodes = 0
        self.reseed(seed)

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return len(self._table)

    def reseed(self, seed: int) -> None:
        """Reset the augmentation generators (numpy and albumentations) from ``seed``."""
        self._rng = np.random.default_rng(seed)
        if self.photometric is not None:
            self.photometric.set_random_seed(int(seed) % (2**32))

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[0] / self.input_size[1]

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict:
        n = len(self._table)
        if not 0 <= index < n:
            raise IndexError(index)
        j = index
        for replaced in range(self.max_replacements + 1):
            if j not in self._bad:
                try:
                    image = self._image(j)
                except ImageReadError as e:
                    if self.on_bad_image == "raise":
                        raise
                    self._bad.add(j)
                    self.bad_images[e.path] += 1
                    log.warning("unreadable image %s (%s); serving the next record instead (%d bad so far in this worker)",
                                e.path, e.reason, len(self.bad_images))
                else:
                    sample = self.build_sample(j, image)
                    # 1: this sample stands in for record ``index``, whose image could not be read
                    sample["meta"]["replaced"] = torch.tensor(int(replaced > 0))
                    return sample
            j = (j + 1) % n
        raise ImageReadError(self._table.path(j), f"the last of {self.max_replacements + 1} consecutive unreadable "
                             f"images from record {index} on (is the image folder right?)")

    def _image(self, j: int) -> np.ndarray:
        """The decoded image of person ``j``. Outside training the last decoded image is kept (one per
        worker), so consecutive persons of one image (the table is sorted by image) share one decode."""
        path = self._table.path(j)
        if not self.train and self._last_image is not None and self._last_image[0] == path:
            return self._last_image[1]
        image = read_image(path, tuple(self._table.image_size[j]))
        self.decodes += 1
        if not self.train:
            self._last_image = (path, image)
        return image

    def crop_params(self, index: int, keypoints: np.ndarray | None = None) -> CropParams:
        """The crop of record ``index``: drawn at random when training, the plain person crop otherwise.
        ``keypoints``: the record's (``PersonTable.keypoints(index)``), when the caller has them already."""
        t = self._table
        center, size = box_to_center_size(t.bbox[index], self.aspect_ratio, self.padding)
        if self.train:
            kp = t.keypoints(index) if keypoints is None else keypoints
            return sample_crop(self._rng, center, size, kp, self.aspect_ratio, self.augment, self.spec)
        return CropParams(center=center, size=size)

    def build_sample(self, index: int, image: np.ndarray, params: CropParams | None = None) -> dict:
        """Sample of record ``index`` from its decoded (H, W, 3) BGR ``image``."""
        t = self._table
        kp = t.keypoints(index)
        p = self.crop_params(index, kp) if params is None else params
        w, h = self.input_size
        m = affine_matrix(p.center, p.size, p.rotation, (w, h), p.flip)
        crop = warp_to_rgb(image, m, (w, h), self.border_value)
        if self.train and self.photometric is not None:
            crop = self.photometric(image=crop)["image"]

        labelled = kp[:, 2] > 0
        out_kp = np.empty(kp.shape, np.float32)
        out_kp[:, :2] = apply_affine(m, kp[:, :2])
        out_kp[:, 2] = kp[:, 2]
        out_kp[~labelled] = 0.0
        valid = t.part_valid[index].copy()
        boxes = transform_boxes(m, t.part_boxes[index]) if valid.any() else np.zeros((len(BOX_PARTS), 4))
        if p.flip:
            out_kp = out_kp[self._flip_index]
            boxes, valid = boxes[BOX_FLIP_INDEX], valid[BOX_FLIP_INDEX]
        inside_w = np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0)
        inside_h = np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0)
        valid &= (inside_w > 0) & (inside_h > 0)
        boxes[~valid] = 0.0

        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "keypoints": torch.from_numpy(out_kp),
            "part_boxes": torch.from_numpy(boxes.astype(np.float32)),
            "part_valid": torch.from_numpy(valid),
            "meta": {
                "image_id": torch.from_numpy(np.array(t.image_id[index])),
                "ann_id": torch.from_numpy(np.array(t.ann_id[index])),
                "bbox_id": torch.from_numpy(np.array(t.bbox_id[index])),
                "center": torch.from_numpy(np.array(p.center, dtype=np.float64)),
                "size": torch.from_numpy(np.array(p.size, dtype=np.float64)),
                "rotation": torch.from_numpy(np.array(p.rotation, dtype=np.float64)),
                "flipped": torch.from_numpy(np.array(p.flip)),
                "score": torch.from_numpy(np.array(t.score[index], dtype=np.float32)),
                "area": torch.from_numpy(np.array(t.area[index], dtype=np.float32)),
                "image_size": torch.from_numpy(t.image_size[index].copy()),
                "replaced": torch.tensor(0),
            },
        }
        return sample


# ----------------------------------------------------------------------------- inverse mapping
def _as_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def crop_to_image(
    points: np.ndarray | torch.Tensor,
    meta: Mapping,
    input_size: Sequence[int],
    flip_index: np.ndarray | None = None,
) -> np.ndarray:
    """Map batched predictions from crop px back to image px.

    Args:
        points: (B, K, C) with x, y in channels 0 and 1 (other channels, e.g. scores, are kept).
        meta: the batched sample meta (``center``, ``size``, ``rotation``, ``flipped``).
        input_size: (W, H) of the crops.
        flip_index: (K,) keypoint flip index; default the COCO-WholeBody one (K = 133) or the body+foot
            one (K = 23). Keypoints of flipped samples are reordered back to the person's own sides.
    Returns:
        (B, K, C) float64 in image px.
    """
    pts = np.array(_as_np(points), dtype=np.float64)
    flipped = _as_np(meta["flipped"]).astype(bool).reshape(-1)
    m = invert_affine(affine_matrix(_as_np(meta["center"]), _as_np(meta["size"]), _as_np(meta["rotation"]),
                                    tuple(input_size), flipped))
    pts[..., :2] = apply_affine(m, pts[..., :2])
    if flipped.any():
        if flip_index is None:
            k = pts.shape[1]
            spec = {COCO_WHOLEBODY.num_keypoints: COCO_WHOLEBODY, BODY_FOOT.num_keypoints: BODY_FOOT}.get(k)
            if spec is None:
                raise ValueError(f"no default flip index for {k} keypoints; pass flip_index")
            flip_index = spec.flip_index
        pts[flipped] = pts[flipped][:, np.asarray(flip_index)]
    return pts


def crop_boxes_to_image(boxes: np.ndarray | torch.Tensor, meta: Mapping, input_size: Sequence[int]) -> np.ndarray:
    """Map batched part boxes (B, 3, 4) xyxy from crop px back to image px (hands swap back when flipped).

    With a rotation the result is the axis-aligned box around the mapped box.
    """
    b = np.array(_as_np(boxes), dtype=np.float64)
    flipped = _as_np(meta["flipped"]).astype(bool).reshape(-1)
    m = invert_affine(affine_matrix(_as_np(meta["center"]), _as_np(meta["size"]), _as_np(meta["rotation"]),
                                    tuple(input_size), flipped))
    out = transform_boxes(m, b)
    out[flipped] = out[flipped][:, BOX_FLIP_INDEX]
    return out


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, random and the dataset's generators per worker.

    The seed is the one torch gives each worker (base seed + worker id), so runs are reproducible
    under ``lightning.seed_everything``. Also limits OpenCV and torch to this worker's thread.

    The worker ignores SIGTERM and SIGINT: SLURM and a terminal's Ctrl-C signal every process of the job,
    and a worker that died of it would fail the main process's next batch with a traceback before the
    main process could stop cleanly (``wholebody.training.signals.SignalStop``); the main process shuts its
    workers down, and torch's watchdog ends them when the main process is gone.
    """
    import random
    import signal

    if torch.utils.data.get_worker_info() is not None:  # in a worker process only
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)
