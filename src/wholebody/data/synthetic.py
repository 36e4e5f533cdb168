"""Synthetic COCO-WholeBody: images of drawn people with exact annotations, in COCO's folder layout.

``generate_synthetic(out, images=N, val_images=M, seed=S)`` (or ``wholebody-synth OUT ...``) writes::

    OUT/annotations/coco_wholebody_train_v1.0.json   OUT/train2017/000000000001.jpg ...
    OUT/annotations/coco_wholebody_val_v1.0.json     OUT/val2017/000001000001.jpg ...
    OUT/synthetic.json                               the generator settings (reuse check)

so that ``data=coco_wholebody data.root=OUT`` reads it like the real set. Each image holds a few people
(:mod:`wholebody.data.figures`) at varied scales on a calm background (gradient, low-frequency noise,
a few muted shapes). What is annotated is what is drawn: a keypoint is labelled (v=2) only when its
own paint is what shows at its pixel; keypoints cut by the border or hidden by later people and by
occluders get v=0 and (0, 0). Parts that are not drawn (the knob ``invalid_part_prob``) are annotated
invalid with zero keypoints and boxes; part boxes are the minimal rectangle of the part's labelled
keypoints; a person's ``bbox``, ``area`` and ``segmentation`` come from its visible pixels. Some images
carry a crowd of small unannotated people marked ``iscrowd=1``. Every image is drawn from its own
seed (``seed``, split, index), so output is deterministic and can be generated in parallel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import orjson

from wholebody.data.figures import Canvas, Style, draw_figure, sample_figure
from wholebody.geometry import keypoints_bbox, keypoints_to_file
from wholebody.io_utils import write_bytes_atomic
from wholebody.keypoints import BODY, BOX_PARTS, COCO_WHOLEBODY, KeypointSpec

log = logging.getLogger(__name__)

#: split -> (image folder, annotation file, image/annotation id base, seed code)
SPLITS = {"train": ("train2017", "coco_wholebody_train_v1.0.json", 0, 0),
          "val": ("val2017", "coco_wholebody_val_v1.0.json", 1_000_000, 1)}
MARKER = "synthetic.json"


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic set.

    Attributes:
        image_size: (W, H) of every image.
        persons: (min, max) annotated people per image.
        scale_range: person height as a fraction of the image height.
        invalid_part_prob: probability that the face, each hand and the feet of a person are not
            drawn (annotated invalid).
        crowd_prob: probability that an image holds a crowd region (``iscrowd=1``).
        occluder_prob: probability that a person is partly hidden by a shape drawn over it.
        border_prob: probability that a person is placed partly outside the image.
        back_view_prob: probability of a person seen from behind (no face; left side on the left).
        background_shapes: at most this many muted shapes on the background.
        max_tilt: people are rotated by up to this many degrees.
        side_colours: left limbs red, right limbs blue (else both grey).
        jpeg_quality: JPEG quality of the written images.
    """

    image_size: tuple[int, int] = (320, 256)
    persons: tuple[int, int] = (1, 3)
    scale_range: tuple[float, float] = (0.4, 0.95)
    invalid_part_prob: float = 0.15
    crowd_prob: float = 0.05
    occluder_prob: float = 0.15
    border_prob: float = 0.15
    back_view_prob: float = 0.0
    background_shapes: int = 5
    max_tilt: float = 20.0
    side_colours: bool = True
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "persons", tuple(int(v) for v in self.persons))
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise ValueError(f"image_size must be (W, H) of at least 32 px, got {self.image_size}")
        if len(self.persons) != 2 or not 1 <= self.persons[0] <= self.persons[1]:
            raise ValueError(f"persons must be (min, max) with 1 <= min <= max, got {self.persons}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) > 0, got {self.scale_range}")
        for name in ("invalid_part_prob", "crowd_prob", "occluder_prob", "border_prob", "back_view_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> SynthConfig:
        """``"default"`` or ``"demo"`` (larger, fewer people, less clutter: learnable in minutes on a
        CPU), with knobs overridden by keyword (``None`` values are ignored)."""
        if name not in PRESETS:
            raise ValueError(f"unknown synthetic preset {name!r}; presets: {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown synthetic setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


PRESETS = {
    "default": SynthConfig(),
    "demo": SynthConfig(image_size=(256, 192), persons=(1, 2), scale_range=(0.55, 0.95), invalid_part_prob=0.1,
                        crowd_prob=0.02, occluder_prob=0.05, border_prob=0.05, background_shapes=3, max_tilt=15.0),
}


# ----------------------------------------------------------------------------- one image
def _muted(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """(n, 3) RGB colours of low saturation (backgrounds and occluders)."""
    if n == 0:
        return np.zeros((0, 3))
    hsv = np.stack([rng.integers(0, 180, n), rng.integers(0, 70, n), rng.integers(70, 235, n)], -1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0].astype(np.float64)


def _background(rng: np.random.Generator, w: int, h: int, shapes: int) -> np.ndarray:
    """A calm (H, W, 3) uint8 RGB background: a gradient with low-frequency noise, then muted shapes.

    Drawn on a coarse grid and upsampled (a linear gradient survives the cubic upsampling exactly)."""
    c = _muted(rng, 2)
    a = rng.uniform(0, 2 * np.pi)
    gw, gh = w // 16 + 2, h // 16 + 2
    xs, ys = (np.arange(gw) + 0.5) / gw, (np.arange(gh) + 0.5) / gh
    t = np.clip(0.5 + (xs[None, :] - 0.5) * np.cos(a) + (ys[:, None] - 0.5) * np.sin(a), 0, 1)
    small = c[0] + t[..., None] * (c[1] - c[0]) + rng.normal(0, rng.uniform(4, 14), (gh, gw, 3))
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for col in _muted(rng, int(rng.integers(0, shapes + 1))):
        col = tuple(int(v) for v in col)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(h // 12, h // 3))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), col, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r, col, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), col, int(rng.integers(2, 8)), cv2.LINE_AA)
    return img


def _place(rng: np.random.Generator, fig, w: int, h: int, border: bool) -> None:
    x0, y0, x1, y1 = fig.extent()
    ew, eh = x1 - x0, y1 - y0
    lo_x, lo_y = rng.uniform(min(0, w - ew), max(0, w - ew)), rng.uniform(min(0, h - eh), max(0, h - eh))
    if border:
        f = rng.uniform(0.15, 0.45)
        side = rng.integers(4)
        if side == 0:
            lo_x = -f * ew
        elif side == 1:
            lo_x = w - (1 - f) * ew
        elif side == 2:
            lo_y = -f * eh
        else:
            lo_y = h - (1 - f) * eh
    fig.transform(1.0, 0.0, np.array([lo_x - x0, lo_y - y0]))


def _figure(rng: np.random.Generator, cfg: SynthConfig, height: float, parts: bool):
    back = rng.random() < cfg.back_view_prob
    fig = sample_figure(rng, back_view=back)
    p = cfg.invalid_part_prob if parts else 1.0
    fig.draw_face = not back and rng.random() >= p
    fig.draw_hands = (bool(rng.random() >= p), bool(rng.random() >= p))
    fig.draw_feet = bool(rng.random() >= p)
    return fig.transform(height, rng.uniform(-cfg.max_tilt, cfg.max_tilt), np.zeros(2))


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        c = cv2.approxPolyDP(c, 0.75, True).reshape(-1, 2).astype(np.float64) + 0.5
        if len(c) >= 3:
            out.append(c.reshape(-1).tolist())
    return out


def _person_annotation(fig, owner, layers, ids, spec: KeypointSpec) -> dict | None:
    h, w = ids.shape
    mask = ((ids >= layers[0]) & (ids <= layers[1])).astype(np.uint8)
    area = int(mask.sum())
    if area == 0:
        return None
    pts = np.round(fig.keypoints, 2)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    ix = np.clip(np.floor(pts[:, 0]).astype(int), 0, w - 1)
    iy = np.clip(np.floor(pts[:, 1]).astype(int), 0, h - 1)
    vis = inside & (owner > 0) & (ids[iy, ix] == owner)
    kp = np.zeros((spec.num_keypoints, 3))
    kp[vis, :2], kp[vis, 2] = pts[vis], 2.0
    ann: dict = {}
    for part in BOX_PARTS:
        sl = spec.slice(part)
        box, ok = keypoints_bbox(kp[sl, :2], kp[sl, 2] > 0)
        valid = bool(ok and (kp[sl, 2] > 0).sum() >= 2 and box[2] - box[0] >= 1 and box[3] - box[1] >= 1)
        if not valid:
            kp[sl] = 0.0
            box = np.zeros(4)
        ann[spec.box_keys[part]] = np.round([box[0], box[1], box[2] - box[0], box[3] - box[1]], 2).tolist()
        ann[spec.valid_keys[part]] = valid
    ann[spec.valid_keys["foot"]] = bool((kp[spec.slice("foot"), 2] > 0).any())
    x, y, bw, bh = cv2.boundingRect(mask)
    in_file = keypoints_to_file(kp)  # COCO's convention (pixel centres at integers), as a real file
    for part in spec.parts:
        ann[spec.annotation_keys[part]] = in_file[spec.slice(part)].reshape(-1).tolist()
    ann.update(bbox=[float(x), float(y), float(bw), float(bh)], area=float(area), iscrowd=0,
               num_keypoints=int((kp[spec.slice("body"), 2] > 0).sum()), segmentation=_polygons(mask), category_id=1)
    return ann


def _crowd_annotation(ids: np.ndarray, layers: tuple[int, int], spec: KeypointSpec) -> dict | None:
    from pycocotools import mask as mask_utils

    mask = ((ids >= layers[0]) & (ids <= layers[1])).astype(np.uint8)
    area = int(mask.sum())
    if area == 0:
        return None
    rle = mask_utils.encode(np.asfortranarray(mask))
    x, y, bw, bh = cv2.boundingRect(mask)
    ann = {spec.annotation_keys[p]: [0.0] * (3 * spec.num_part(p)) for p in spec.parts}
    ann.update({spec.box_keys[p]: [0.0] * 4 for p in BOX_PARTS})
    ann.update({spec.valid_keys[p]: False for p in spec.valid_keys})
    ann.update(bbox=[float(x), float(y), float(bw), float(bh)], area=float(area), iscrowd=1, num_keypoints=0,
               segmentation={"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}, category_id=1)
    return ann


def render_image(
    rng: np.random.Generator, cfg: SynthConfig = PRESETS["default"], spec: KeypointSpec = COCO_WHOLEBODY
) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """Draw one synthetic image.

    Returns:
        the (H, W, 3) uint8 RGB image, its annotations (COCO-WholeBody fields, without ``id`` and
        ``image_id``; crowd regions included) and the (H, W) uint16 layer-id map (for checks).
    """
    w, h = cfg.image_size
    canvas = Canvas(_background(rng, w, h, cfg.background_shapes))
    anns: list[dict] = []
    crowd_layers = None
    if rng.random() < cfg.crowd_prob:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.6) * h
        spread = rng.uniform(0.15, 0.3) * w
        first = None
        for _ in range(int(rng.integers(5, 12))):
            fig = _figure(rng, cfg, rng.uniform(0.12, 0.22) * h, parts=False)
            x0, y0, x1, y1 = fig.extent()
            fig.transform(1.0, 0.0, np.array([cx + rng.uniform(-spread, spread) - (x0 + x1) / 2,
                                              cy + rng.uniform(-0.05, 0.05) * h - (y0 + y1) / 2]))
            _, (lo, hi) = draw_figure(canvas, fig, Style.sample(rng, cfg.side_colours))
            first = lo if first is None else first
        crowd_layers = (first, hi)
    people = []
    n = int(rng.integers(cfg.persons[0], cfg.persons[1] + 1))
    heights = np.sort(rng.uniform(*cfg.scale_range, size=n) * h)  # the small (far) ones first
    for height in heights:
        fig = _figure(rng, cfg, height, parts=True)
        _place(rng, fig, w, h, rng.random() < cfg.border_prob)
        owner, layers = draw_figure(canvas, fig, Style.sample(rng, cfg.side_colours))
        people.append((fig, owner, layers, height))
    for fig, _, _, height in people:
        if rng.random() < cfg.occluder_prob:
            c = fig.keypoints[rng.integers(spec.num_keypoints)]
            r = rng.uniform(0.08, 0.18) * height
            col = _muted(rng)[0]
            if rng.random() < 0.5:
                pts = np.array([[-r, -0.7 * r], [r, -0.7 * r], [r, 0.7 * r], [-r, 0.7 * r]]) @ _rot(rng.uniform(0, 90)).T + c
                canvas.fill(pts, col, Canvas.OCCLUDER)
            else:
                canvas.ellipse(c, (r, 0.7 * r), rng.uniform(0, 180), col, Canvas.OCCLUDER)
    for fig, owner, layers, _ in people:
        ann = _person_annotation(fig, owner, layers, canvas.ids, spec)
        if ann is not None:
            anns.append(ann)
    if crowd_layers is not None:
        ann = _crowd_annotation(canvas.ids, crowd_layers, spec)
        if ann is not None:
            anns.append(ann)
    return canvas.image, anns, canvas.ids


def _rot(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s], [s, c]])


# ----------------------------------------------------------------------------- the data set
def _image_seed(seed: int, split_code: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), split_code, int(index)])


def _render_chunk(args) -> list[tuple[int, list[dict]]]:
    cv2.setNumThreads(1)
    seed, split, indices, cfg, folder, spec = args
    out = []
    for i in indices:
        image_id = SPLITS[split][2] + i + 1
        img, anns, _ = render_image(_image_seed(seed, SPLITS[split][3], i), cfg, spec)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for synthetic image {image_id}")
        write_bytes_atomic(Path(folder) / f"{image_id:012d}.jpg", buf.tobytes())
        out.append((image_id, anns))
    return out


def _categories(spec: KeypointSpec) -> list[dict]:
    names = list(BODY.names)
    skeleton = [[names.index(a) + 1, names.index(b) + 1] for a, b in BODY.skeleton]
    return [{"supercategory": "person", "id": 1, "name": "person", "keypoints": names, "skeleton": skeleton}]


def write_split(
    out: str | os.PathLike, split: str, num_images: int, seed: int, cfg: SynthConfig,
    workers: int = 1, spec: KeypointSpec = COCO_WHOLEBODY,
) -> Path:
    """Render one split (``"train"`` or ``"val"``) into ``out``; returns its annotation file."""
    folder_name, ann_name, id_base, _ = SPLITS[split]
    out = Path(out)
    folder = out / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    chunk = max(1, min(64, num_images // max(1, 4 * workers)))
    jobs = [(seed, split, range(a, min(a + chunk, num_images)), cfg, str(folder), spec) for a in range(0, num_images, chunk)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = [r for part in ex.map(_render_chunk, jobs) for r in part]
    else:
        results = [r for job in jobs for r in _render_chunk(job)]
    w, h = cfg.image_size
    images, annotations = [], []
    for image_id, anns in results:
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
        for a in anns:
            annotations.append({"id": id_base + len(annotations) + 1, "image_id": image_id, **a})
    doc = {
        "info": {"description": "synthetic COCO-WholeBody (wholebody-synth)", "version": "1.0", "split": split,
                 "seed": seed, "config": asdict(cfg)},
        "licenses": [],
        "categories": _categories(spec),
        "images": images,
        "annotations": annotations,
    }
    path = out / "annotations" / ann_name
    write_bytes_atomic(path, orjson.dumps(doc))
    return path


def generate_synthetic(
    out: str | os.PathLike,
    images: int = 1000,
    val_images: int = 100,
    seed: int = 0,
    config: SynthConfig | Mapping | None = None,
    workers: int = 1,
) -> dict:
    """Write a synthetic COCO-WholeBody set (train and val splits) into ``out``.

    Args:
        out: output folder (created); existing files of the same names are replaced.
        images, val_images: number of train and val images.
        seed: the set is a pure function of (seed, config, sizes).
        config: a :class:`SynthConfig`, a mapping of its fields (plus optional ``preset``), or None.
        workers: processes to render with.
    Returns:
        ``{"train": Path, "val": Path, "seconds": float, "images_per_s": float}``.
    """
    cfg = as_synth_config(config)
    if images < 0 or val_images < 0:
        raise ValueError("image counts must be >= 0")
    t0 = time.perf_counter()
    train = write_split(out, "train", images, seed, cfg, workers)
    val = write_split(out, "val", val_images, seed, cfg, workers)
    dt = time.perf_counter() - t0
    marker = {"images": images, "val_images": val_images, "seed": seed, "config": asdict(cfg)}
    write_bytes_atomic(Path(out) / MARKER, orjson.dumps(marker, option=orjson.OPT_INDENT_2))
    rate = (images + val_images) / dt if dt > 0 else float("inf")
    log.info("synthetic COCO-WholeBody: %d + %d images in %.1f s (%.0f images/s) -> %s", images, val_images, dt, rate, out)
    return {"train": train, "val": val, "seconds": dt, "images_per_s": rate}


def as_synth_config(config: SynthConfig | Mapping | None) -> SynthConfig:
    """A SynthConfig from itself, ``None`` (defaults) or a mapping with an optional ``preset`` key."""
    if config is None:
        return PRESETS["default"]
    if isinstance(config, SynthConfig):
        return config
    d = dict(config)
    preset = d.pop("preset", None) or "default"
    for k, v in d.items():
        if isinstance(v, Sequence) and not isinstance(v, str):
            d[k] = tuple(v)
    return SynthConfig.preset(preset, **d)


def synthetic_is_current(out: str | os.PathLike, images: int, val_images: int, seed: int, config) -> bool:
    """True when ``out`` holds a complete set generated with exactly these settings."""
    out = Path(out)
    marker = out / MARKER
    if not marker.exists() or not all((out / "annotations" / SPLITS[s][1]).exists() for s in SPLITS):
        return False
    try:
        got = orjson.loads(marker.read_bytes())
    except orjson.JSONDecodeError:
        return False
    want = {"images": images, "val_images": val_images, "seed": seed, "config": asdict(as_synth_config(config))}
    return orjson.loads(orjson.dumps(want)) == got
