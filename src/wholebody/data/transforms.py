"""Training augmentation: crop-parameter sampling (scale, rotation, flip, shift, half-body) and the
photometric pipeline (albumentations, pixel-level only).

Geometric augmentation never touches pixels here: it only chooses the crop region (centre, size),
rotation and flip of the one affine that :mod:`wholebody.data.dataset` applies to the image, the
keypoints and the part boxes together (:func:`wholebody.geometry.affine_matrix`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from wholebody.geometry import box_to_center_size
from wholebody.keypoints import COCO_WHOLEBODY, KeypointSpec

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import
import albumentations as A  # noqa: E402


@dataclass(frozen=True)
class AugmentConfig:
    """Geometric augmentation of training crops.

    Attributes:
        scale_factor: the crop size is multiplied by ``U(1 - f, 1 + f)`` (0.35: +-35 %).
        rotation_factor: rotation ``U(-r, r)`` degrees, applied with probability ``rotation_prob``.
        flip_prob: probability of a horizontal flip (left/right keypoints and hand boxes swap).
        shift_factor: the centre moves by ``U(-s, s)`` times the crop size on each axis.
        half_body_prob: probability of cropping the upper or the lower body only, for persons with
            more than ``half_body_min_keypoints`` labelled body+foot keypoints.
        half_body_padding: padding of the half-body region (its keypoints' extent at the input aspect,
            centred on their mean).
    """

    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    shift_factor: float = 0.0
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    half_body_padding: float = 1.5

    def __post_init__(self) -> None:
        for name in ("rotation_prob", "flip_prob", "half_body_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"AugmentConfig.scale_factor must lie in [0, 1), got {self.scale_factor}")

    @classmethod
    def from_any(cls, cfg: AugmentConfig | Mapping | None) -> AugmentConfig:
        """An AugmentConfig from itself, a mapping (Hydra config) or ``None`` (the defaults)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown augmentation setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: cfg[k] for k in cfg})


#: No geometric augmentation: the evaluation crop.
NO_AUGMENT = AugmentConfig(
    scale_factor=0.0, rotation_factor=0.0, rotation_prob=0.0, flip_prob=0.0, shift_factor=0.0, half_body_prob=0.0
)


@dataclass(frozen=True)
class CropParams:
    """The crop of one sample: region ``center``/``size`` (image px, float64), rotation (degrees), flip."""

    center: np.ndarray
    size: np.ndarray
    rotation: float = 0.0
    flip: bool = False
    half_body: bool = False


def half_body_region(
    keypoints: np.ndarray,
    rng: np.random.Generator,
    aspect_ratio: float,
    min_keypoints: int = 8,
    padding: float = 1.5,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop region of the upper or the lower body, as HRNet's half-body augmentation draws it.

    The upper half is chosen with probability 0.5 when it has more than 2 labelled keypoints; otherwise
    the lower half when it has more than 2, else the upper. The region is centred on the mean of the
    chosen keypoints, its size their extent grown to the input aspect ratio, times ``padding``.

    Args:
        keypoints: (K, 3) image px with visibility.
        aspect_ratio: input width / height.
    Returns:
        (center (2,), size (2,)) in image px, or ``None`` when the person has ``min_keypoints`` or fewer
        labelled upper+lower body keypoints or the chosen half has fewer than 2.
    """
    upper, lower = _halves(spec)
    vis_u = upper[keypoints[upper, 2] > 0]
    vis_l = lower[keypoints[lower, 2] > 0]
    if len(vis_u) + len(vis_l) <= min_keypoints:
        return None
    chosen = vis_u if (rng.random() < 0.5 and len(vis_u) > 2) or len(vis_l) <= 2 else vis_l
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    if (hi - lo).max() <= 0:  # coincident points: no region
        return None
    _, size = box_to_center_size(np.concatenate([lo, hi]), aspect_ratio, padding)
    return pts.mean(0), size


_HALVES: dict[int, tuple[KeypointSpec, np.ndarray, np.ndarray]] = {}


def _halves(spec: KeypointSpec) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays of the upper and lower body of ``spec`` (cached per spec)."""
    hit = _HALVES.get(id(spec))
    if hit is None or hit[0] is not spec:
        hit = _HALVES[id(spec)] = (spec, spec.indices(spec.upper_body), spec.indices(spec.lower_body))
    return hit[1], hit[2]


def sample_crop(
    rng: np.random.Generator,
    center: np.ndarray,
    size: np.ndarray,
    keypoints: np.ndarray,
    aspect_ratio: float,
    cfg: AugmentConfig,
    spec: KeypointSpec = COCO_WHOLEBODY,
) -> CropParams:
    """Draw the augmented crop of one training sample.

    Order: half-body (replaces the region), then scale, shift, rotation and flip.

    Args:
        center, size: (2,) the person's crop region, image px (from :func:`box_to_center_size`).
        keypoints: (K, 3) image px with visibility (for half-body).
    """
    center = np.asarray(center, np.float64)
    size = np.asarray(size, np.float64)
    half = False
    if cfg.half_body_prob > 0 and rng.random() < cfg.half_body_prob:
        region = half_body_region(keypoints, rng, aspect_ratio, cfg.half_body_min_keypoints, cfg.half_body_padding, spec)
        if region is not None:
            center, size, half = region[0], region[1], True
    if cfg.scale_factor > 0:
        size = size * rng.uniform(1.0 - cfg.scale_factor, 1.0 + cfg.scale_factor)
    if cfg.shift_factor > 0:
        center = center + size * rng.uniform(-cfg.shift_factor, cfg.shift_factor, size=2)
    rotation = 0.0
    if cfg.rotation_factor > 0 and rng.random() < cfg.rotation_prob:
        rotation = float(rng.uniform(-cfg.rotation_factor, cfg.rotation_factor))
    flip = bool(cfg.flip_prob > 0 and rng.random() < cfg.flip_prob)
    return CropParams(center=center, size=size, rotation=rotation, flip=flip, half_body=half)


# ----------------------------------------------------------------------------- photometric
class LinearColorJitter(A.ImageOnlyTransform):
    """Brightness, contrast, saturation and hue jitter of uint8 RGB images as one 3x4 colour matrix.

    Per image: hue turns by ``U(-hue, hue)`` degrees about the grey axis, saturation scales by
    ``U(1 - saturation, 1 + saturation)`` (a blend with luma), contrast by ``U(1 - contrast, 1 + contrast)``
    about the image's mean luma, brightness by ``U(1 - brightness, 1 + brightness)``. Composed into one
    matrix, the whole jitter is a single ``cv2.transform`` pass (saturating), several times cheaper than
    a jitter through HSV.
    """

    _LUMA = np.array([0.299, 0.587, 0.114])
    _AXIS = np.ones(3) / np.sqrt(3.0)

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 10.0,
                 p: float = 0.8):
        super().__init__(p=p)
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= v < 1:
                raise ValueError(f"LinearColorJitter: {name} must lie in [0, 1), got {v}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast", "saturation", "hue")

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        r = self.py_random
        return {
            "b": r.uniform(1 - self.brightness, 1 + self.brightness),
            "c": r.uniform(1 - self.contrast, 1 + self.contrast),
            "s": r.uniform(1 - self.saturation, 1 + self.saturation),
            "h": r.uniform(-self.hue, self.hue),
        }

    @classmethod
    def matrix(cls, mean_rgb: np.ndarray, b: float, c: float, s: float, h: float) -> np.ndarray:
        """(3, 4) float32 colour matrix (RGB in, RGB out, last column the offset)."""
        k = cls._AXIS
        t = np.deg2rad(h)
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1 - np.cos(t)) * np.outer(k, k)
        sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), cls._LUMA)
        m = float(cls._LUMA @ mean_rgb)
        out = np.empty((3, 4))
        out[:, :3] = b * c * sat @ rot
        out[:, 3] = b * (1 - c) * m
        return out.astype(np.float32)

    def apply(self, img: np.ndarray, b: float, c: float, s: float, h: float, **params) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"LinearColorJitter expects (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        mean = np.array(cv2.mean(img)[:3])
        return cv2.transform(img, self.matrix(mean, b, c, s, h))


def default_photometric(
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 10.0,
    color_prob: float = 0.8,
    blur_prob: float = 0.1,
    noise_prob: float = 0.0,
) -> A.Compose:
    """The default pixel-level augmentation of uint8 RGB crops (cheap ops only; run after the warp)."""
    transforms: list[A.BasicTransform] = [
        LinearColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=color_prob),
    ]
    if blur_prob > 0:
        transforms.append(A.Blur(blur_limit=(3, 5), p=blur_prob))
    if noise_prob > 0:
        transforms.append(A.GaussNoise(std_range=(0.02, 0.08), p=noise_prob))
    return A.Compose(transforms)


def as_photometric(transform: A.BaseCompose | A.BasicTransform | Sequence | None) -> A.Compose | None:
    """Validate a photometric pipeline: every transform must be pixel-level (``ImageOnlyTransform``).

    A spatial transform would move pixels without moving the keypoints, so it is refused rather than
    producing wrong targets. Accepts a Compose, one transform, a list of transforms, or ``None``.
    """
    if transform is None:
        return None
    if isinstance(transform, A.BasicTransform) or isinstance(transform, Sequence):
        items = [transform] if isinstance(transform, A.BasicTransform) else list(transform)
        transform = A.Compose(items)
    if not isinstance(transform, A.BaseCompose):
        raise TypeError(f"photometric augmentation must be albumentations transforms, got {type(transform).__name__}")

    def walk(t: object) -> None:
        if isinstance(t, A.BaseCompose):
            for child in t.transforms:
                walk(child)
        elif not isinstance(t, A.ImageOnlyTransform):
            raise ValueError(
                f"photometric augmentation must be pixel-level only; {type(t).__name__} moves pixels "
                "(geometric augmentation is done by the crop affine: see AugmentConfig)"
            )

    walk(transform)
    return transform
