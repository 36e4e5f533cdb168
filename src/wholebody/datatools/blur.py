"""Face blurriness: each valid face box is cropped from its image, made grey, resized to 112x112,
and scored by log10 of the variance of its Laplacian (low = blurry).

Images are read once each, in a process pool; unreadable images are skipped and listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wholebody.datatools.annotations import ImageInfo, WholeBodyTable
from wholebody.datatools.images import SkippedImage, check_image_dir, run_image_jobs
from wholebody.images import read_image

#: Side of the square every face is resized to before its Laplacian is taken.
BLUR_SIZE = 112


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian (kernel [[0,1,0],[1,-4,1],[0,1,0]]) of an (H, W) grey image."""
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F, ksize=1).var())


def crop_resize(grey: np.ndarray, box_xyxy: np.ndarray, size: int = BLUR_SIZE) -> np.ndarray | None:
    """The box's pixels (all pixels the box touches, clipped to the image), resized to (size, size).

    Shrinking uses area averaging (no aliasing), enlarging bilinear interpolation. ``None`` when the
    box lies outside the image.
    """
    h, w = grey.shape[:2]
    x1, y1 = int(np.floor(max(box_xyxy[0], 0.0))), int(np.floor(max(box_xyxy[1], 0.0)))
    x2, y2 = int(np.ceil(min(box_xyxy[2], w))), int(np.ceil(min(box_xyxy[3], h)))
    if x2 <= x1 or y2 <= y1:
        return None
    crop = grey[y1:y2, x1:x2]
    shrink = crop.shape[0] >= size and crop.shape[1] >= size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def face_sharpness(grey: np.ndarray, box_xyxy: np.ndarray, size: int = BLUR_SIZE) -> float:
    """Laplacian variance of one face (NaN when its box lies outside the image)."""
    crop = crop_resize(grey, box_xyxy, size)
    return np.nan if crop is None else laplacian_variance(crop)


@dataclass(frozen=True)
class _Job:
    path: Path
    info: ImageInfo
    rows: np.ndarray  # table rows of this image's faces
    boxes: np.ndarray  # (F, 4) xyxy image px
    size: int


def _score_image(job: _Job) -> tuple[np.ndarray, np.ndarray]:
    grey = read_image(job.path, (job.info.width, job.info.height), grey=True)
    return job.rows, np.array([face_sharpness(grey, b, job.size) for b in job.boxes])


@dataclass(frozen=True)
class FaceBlur:
    """Blurriness of the valid faces.

    Attributes:
        rows: (F,) table rows; variance: (F,) Laplacian variance; log10: (F,) its log10 (-inf for a
        flat crop). skipped: images that could not be read; outside: faces whose box lies outside
        their image (left out).
    """

    rows: np.ndarray
    variance: np.ndarray
    skipped: list[SkippedImage]
    outside: int

    @property
    def log10(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log10(self.variance)


def face_blurriness(
    table: WholeBodyTable,
    image_dir: str | Path,
    size: int = BLUR_SIZE,
    workers: int = 0,
    progress: bool | None = None,
) -> FaceBlur:
    """Score every face with ``face_valid`` and a box of positive size (crowd rows have none)."""
    image_dir = check_image_dir(image_dir)
    sel = np.flatnonzero(table.usable("face"))
    boxes = table.part_box_xyxy("face")
    order = sel[np.argsort(table.image_id[sel], kind="stable")]
    img_ids, starts = np.unique(table.image_id[order], return_index=True)
    jobs, names = [], []
    for img_id, rows in zip(img_ids, np.split(order, starts[1:])):
        info = table.images[int(img_id)]
        jobs.append(_Job(image_dir / info.file_name, info, rows, boxes[rows], size))
        names.append(info.file_name)
    results, skipped = run_image_jobs(_score_image, jobs, names, workers=workers, desc="face blur", progress=progress)
    rows = np.concatenate([r for r, _ in results]) if results else np.zeros(0, np.int64)
    var = np.concatenate([v for _, v in results]) if results else np.zeros(0)
    inside = np.isfinite(var)
    return FaceBlur(rows[inside], var[inside], skipped, int((~inside).sum()))
