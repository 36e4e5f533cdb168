"""Heatmap codecs: Gaussian targets, sub-pixel decoding, corner-encoded boxes, RoI frames.

Pure torch functions, batched, usable on CPU or GPU, following the pixel convention of
:mod:`wholebody.geometry` (pixel ``j`` covers ``[j, j+1)``, centre ``j + 0.5``). A heatmap of
stride ``s`` over a crop is the crop scaled by ``1/s``; a RoI heatmap of size ``S`` over a box
``(x1, y1, x2, y2)`` maps ``x_roi = (x - x1) * S / (x2 - x1)``.

BodyNet channel layout (``BODY_CHANNELS``, 38 for COCO-WholeBody): the 23 body+foot keypoints,
then for each of face, left hand, right hand the 5 box points ``BOX_POINTS``: the corners
top-left, top-right, bottom-right, bottom-left and the centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wholebody.keypoints import BODY_FOOT, BOX_FLIP_INDEX, BOX_PARTS

#: The five heatmap points that encode a box, in channel order.
BOX_POINTS: tuple[str, ...] = ("top_left", "top_right", "bottom_right", "bottom_left", "center")
#: Channel names of BodyNet's output, in order.
BODY_CHANNELS: tuple[str, ...] = BODY_FOOT.names + tuple(f"{p}_{q}" for p in BOX_PARTS for q in BOX_POINTS)
NUM_BODY_KEYPOINTS: int = BODY_FOOT.num_keypoints
NUM_BOX_POINTS: int = len(BOX_POINTS)


# ----------------------------------------------------------------------------- Gaussians
def gaussian_heatmaps(
    points: torch.Tensor,
    weights: torch.Tensor,
    size: tuple[int, int],
    sigma: float,
    margin: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render unnormalised Gaussians (peak 1) at sub-pixel positions.

    Args:
        points: (B, K, 2) float, heatmap px (x, y).
        weights: (B, K) float; 0 means "no target" (invisible keypoint, invalid box).
        size: (h, w) of the heatmap.
        sigma: standard deviation in heatmap px.
        margin: a point farther than ``margin * sigma`` outside the map gets weight 0.
    Returns:
        heatmaps (B, K, h, w) float32 (zeros where the weight is 0) and weights (B, K) float32.
    """
    h, w = int(size[0]), int(size[1])
    pts = points.to(torch.float32)
    wts = weights.to(torch.float32)
    finite = torch.isfinite(pts).all(dim=-1)
    pts = torch.where(finite[..., None], pts, torch.zeros_like(pts))
    x, y = pts[..., 0], pts[..., 1]
    m = margin * sigma
    inside = finite & (x > -m) & (x < w + m) & (y > -m) & (y < h + m)
    wts = torch.where(inside, wts, torch.zeros_like(wts))
    xs = torch.arange(w, device=pts.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=pts.device, dtype=torch.float32) + 0.5
    gx = torch.exp(-((xs - x[..., None]) ** 2) / (2 * sigma**2))  # (B, K, w)
    gy = torch.exp(-((ys - y[..., None]) ** 2) / (2 * sigma**2))  # (B, K, h)
    gy = gy * (wts > 0).to(gy.dtype)[..., None]
    return gy[..., :, None] * gx[..., None, :], wts


# ----------------------------------------------------------------------------- decoding
def _argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, k, h, w = heatmaps.shape
    scores, idx = heatmaps.reshape(b, k, h * w).max(dim=-1)
    return idx % w, torch.div(idx, w, rounding_mode="floor"), scores


def _gather(hm: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """hm (B, K, h, w), ix/iy (B, K) long (clamped) -> (B, K)."""
    h, w = hm.shape[-2:]
    ix = ix.clamp(0, w - 1)
    iy = iy.clamp(0, h - 1)
    flat = hm.reshape(*hm.shape[:2], h * w)
    return flat.gather(-1, (iy * w + ix)[..., None])[..., 0]


def _gaussian_blur(heatmaps: torch.Tensor, kernel: int) -> torch.Tensor:
    """Blur each map with a Gaussian of the given odd size (zero outside the map, as a heatmap's
    Gaussian is), keeping each map's maximum."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    r = torch.arange(kernel, dtype=heatmaps.dtype, device=heatmaps.device) - (kernel - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    b, k, h, w = heatmaps.shape
    x = heatmaps.reshape(b * k, 1, h, w)
    pad = kernel // 2
    x = F.conv2d(F.pad(x, (pad, pad, pad, pad)), g.view(1, 1, 1, -1))
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    x = x.reshape(b, k, h, w)
    orig_max = heatmaps.amax(dim=(-2, -1), keepdim=True)
    new_max = x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return x * (orig_max / new_max)


def dark_kernel_size(width: int) -> int:
    """DARK's blur size for heatmaps ``width`` px wide: the odd size nearest below ``width * 11 / 48``
    (11 at 64x48, 17 at 96x72: the sizes used with 256x192 and 384x288 inputs; 15 for 64x64 RoI maps)."""
    return max(3, 2 * int(width * 11 / 48 / 2) + 1)


def decode_heatmaps(
    heatmaps: torch.Tensor, refine: str = "quarter", dark_kernel: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak positions of heatmaps with sub-pixel refinement.

    Args:
        heatmaps: (B, K, h, w).
        refine: ``"none"`` (pixel centre of the argmax), ``"quarter"`` (move 0.25 px toward the
            higher neighbour on each axis), or ``"dark"`` (distribution-aware, Zhang et al. 2020: the
            map blurred with a Gaussian, zero outside the map; one Newton step on its log from the
            blurred map's maximum pixel, kept when the log's Hessian there is negative definite and the
            step stays within 1 px of that pixel, where the blurred map's true maximum lies. Flat or
            noisy maps fail these checks and keep the pixel centre).
        dark_kernel: odd Gaussian blur size for ``"dark"``; default :func:`dark_kernel_size` of the width.
    Returns:
        points (B, K, 2) float32 heatmap px and scores (B, K) (the maximum of each map).
    """
    if refine not in ("none", "quarter", "dark"):
        raise ValueError(f"refine must be 'none', 'quarter' or 'dark', got {refine!r}")
    hm = heatmaps.detach().to(torch.float32)
    ix, iy, scores = _argmax_2d(hm)
    pts = torch.stack([ix, iy], dim=-1).to(torch.float32) + 0.5
    h, w = hm.shape[-2:]
    if refine == "quarter":
        dx = _gather(hm, ix + 1, iy) - _gather(hm, ix - 1, iy)
        dy = _gather(hm, ix, iy + 1) - _gather(hm, ix, iy - 1)
        okx = (ix > 0) & (ix < w - 1)
        oky = (iy > 0) & (iy < h - 1)
        pts[..., 0] += 0.25 * torch.sign(dx) * okx
        pts[..., 1] += 0.25 * torch.sign(dy) * oky
    elif refine == "dark":
        blurred = _gaussian_blur(hm, dark_kernel or dark_kernel_size(w))
        bx, by, _ = _argmax_2d(blurred)  # the start: noise can move the raw maximum off the peak
        lg = torch.log(blurred.clamp_min(1e-10))

        def at(ox: int, oy: int) -> torch.Tensor:
            return _gather(lg, bx + ox, by + oy)

        c = at(0, 0)
        gx = 0.5 * (at(1, 0) - at(-1, 0))
        gy = 0.5 * (at(0, 1) - at(0, -1))
        hxx = at(1, 0) - 2 * c + at(-1, 0)
        hyy = at(0, 1) - 2 * c + at(0, -1)
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy**2
        ok = (bx > 0) & (bx < w - 1) & (by > 0) & (by < h - 1) & (det > 1e-12) & (hxx < 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(hyy * gx - hxy * gy) / safe
        oy = -(hxx * gy - hxy * gx) / safe
        ok = ok & (ox.abs() <= 1.0) & (oy.abs() <= 1.0)
        start = torch.stack([bx, by], dim=-1).to(torch.float32) + 0.5
        pts = torch.where(ok[..., None], start + torch.stack([ox, oy], dim=-1), pts)
    return pts, scores


# ----------------------------------------------------------------------------- boxes as points
def box_points(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy -> (..., 5, 2) points in ``BOX_POINTS`` order (4 corners, centre)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xs = torch.stack([x1, x2, x2, x1, cx], dim=-1)
    ys = torch.stack([y1, y1, y2, y2, cy], dim=-1)
    return torch.stack([xs, ys], dim=-1)


def boxes_from_points(
    points: torch.Tensor, scores: torch.Tensor, center_weight: float = 1.0, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The axis-aligned box closest to 4 decoded corners and a centre.

    Weighted least squares: minimise ``sum_i s_i * |p_i - f_i(box)|^2`` over ``box = (x1, y1, x2, y2)``
    where ``f_i`` are the box's corners and centre and ``s_i`` the decoded confidences (clamped at 0,
    centre scaled by ``center_weight``). With confident corners this is their average; a weak corner
    is replaced by the reflection of the opposite one through the centre. x and y separate into
    two 2x2 systems solved in closed form.

    Args:
        points: (..., 5, 2) in ``BOX_POINTS`` order; scores: (..., 5).
    Returns:
        boxes (..., 4) xyxy (x1 <= x2, y1 <= y2) and confidence (...,) = mean of the 5 scores.
    """
    s = scores.clamp_min(0) + eps
    tl, tr, br, bl, c = (s[..., i] for i in range(5))
    c = c * center_weight
    px, py = points[..., 0], points[..., 1]

    def solve(a1, b1, a2, b2, cc, pc):
        # minimise a1 (u - b1/a1)^2 + a2 (v - b2/a2)^2 + cc ((u+v)/2 - pc)^2, with b = weighted sums
        q = cc / 4
        m11, m22, m12 = a1 + q, a2 + q, q
        r1, r2 = b1 + cc * pc / 2, b2 + cc * pc / 2
        det = m11 * m22 - m12 * m12
        return (m22 * r1 - m12 * r2) / det, (m11 * r2 - m12 * r1) / det

    x1, x2 = solve(tl + bl, tl * px[..., 0] + bl * px[..., 3], tr + br, tr * px[..., 1] + br * px[..., 2], c, px[..., 4])
    y1, y2 = solve(tl + tr, tl * py[..., 0] + tr * py[..., 1], bl + br, bl * py[..., 3] + br * py[..., 2], c, py[..., 4])
    boxes = torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), torch.maximum(y1, y2)], -1)
    return boxes, scores.clamp_min(0).mean(dim=-1)


def square_boxes(boxes: torch.Tensor, scale: float = 1.0, min_size: float = 1.0) -> torch.Tensor:
    """Square boxes about the same centre with side ``scale * max(w, h)`` (at least ``min_size``).

    (..., 4) xyxy -> (..., 4) xyxy. Used to turn part boxes into the RoIs ZoomNet zooms into.
    """
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    side = (boxes[..., 2:] - boxes[..., :2]).amax(dim=-1, keepdim=True) * scale
    half = side.clamp_min(min_size) / 2
    return torch.cat([c - half, c + half], dim=-1)


# ----------------------------------------------------------------------------- RoI frames
def to_roi(points: torch.Tensor, boxes: torch.Tensor, roi_size: int) -> torch.Tensor:
    """Crop px -> RoI px. points (B, K, 2), boxes (B, 4) xyxy crop px -> (B, K, 2) in ``[0, roi_size]``."""
    lo = boxes[..., None, :2]
    span = (boxes[..., None, 2:] - lo).clamp_min(1e-6)
    return (points - lo) * (roi_size / span)


def from_roi(points: torch.Tensor, boxes: torch.Tensor, roi_size: int) -> torch.Tensor:
    """RoI px -> crop px; inverse of :func:`to_roi`. points (B, K, 2), boxes (B, 4) -> (B, K, 2)."""
    lo = boxes[..., None, :2]
    span = (boxes[..., None, 2:] - lo).clamp_min(1e-6)
    return lo + points * (span / roi_size)


# ----------------------------------------------------------------------------- ZoomNet targets
def encode_body_targets(
    keypoints: torch.Tensor,
    part_boxes: torch.Tensor,
    part_valid: torch.Tensor,
    heatmap_size: tuple[int, int],
    stride: float,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BodyNet targets: 23 keypoint Gaussians + 5 box-point Gaussians for each of the 3 part boxes.

    Args:
        keypoints: (B, 23, 3) crop px with visibility (> 0 means labelled).
        part_boxes: (B, 3, 4) xyxy crop px (face, left hand, right hand).
        part_valid: (B, 3) bool.
        heatmap_size: (h, w), normally the crop size / stride.
        stride: crop px per heatmap px.
        sigma: Gaussian sigma in heatmap px.
    Returns:
        heatmaps (B, 38, h, w) and weights (B, 38) in ``BODY_CHANNELS`` order.
    """
    b = keypoints.shape[0]
    kp = keypoints[..., :2] / stride
    kw = (keypoints[..., 2] > 0).to(torch.float32)
    bp = box_points(part_boxes.to(torch.float32) / stride).reshape(b, -1, 2)  # (B, 15, 2)
    bw = part_valid.to(torch.float32)[..., None].expand(-1, -1, NUM_BOX_POINTS).reshape(b, -1)
    return gaussian_heatmaps(torch.cat([kp, bp], 1), torch.cat([kw, bw], 1), heatmap_size, sigma)


def encode_roi_targets(
    keypoints: torch.Tensor, roi_boxes: torch.Tensor, roi_size: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Part-head targets in the frame of the RoI actually used.

    Args:
        keypoints: (B, K, 3) crop px with visibility.
        roi_boxes: (B, 4) xyxy crop px.
        roi_size: side of the square RoI heatmap (64 in the paper).
        sigma: Gaussian sigma in RoI heatmap px.
    Returns:
        heatmaps (B, K, S, S) and weights (B, K); keypoints outside the RoI (beyond the Gaussian's
        reach) weigh 0.
    """
    pts = to_roi(keypoints[..., :2].to(torch.float32), roi_boxes.to(torch.float32), roi_size)
    return gaussian_heatmaps(pts, (keypoints[..., 2] > 0).to(torch.float32), (roi_size, roi_size), sigma)


def decode_body_heatmaps(
    heatmaps: torch.Tensor, stride: float, refine: str = "quarter", center_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """Decode BodyNet's 38 channels.

    Args:
        heatmaps: (B, 38, h, w).
        stride: crop px per heatmap px.
    Returns:
        dict with ``keypoints`` (B, 23, 2) crop px, ``scores`` (B, 23), ``boxes`` (B, 3, 4) xyxy crop px
        and ``box_scores`` (B, 3).
    """
    pts, sc = decode_heatmaps(heatmaps, refine=refine)
    pts = pts * stride
    b = heatmaps.shape[0]
    k = NUM_BODY_KEYPOINTS
    bpts = pts[:, k:].reshape(b, len(BOX_PARTS), NUM_BOX_POINTS, 2)
    bsc = sc[:, k:].reshape(b, len(BOX_PARTS), NUM_BOX_POINTS)
    boxes, box_scores = boxes_from_points(bpts, bsc, center_weight=center_weight)
    return {"keypoints": pts[:, :k], "scores": sc[:, :k], "boxes": boxes, "box_scores": box_scores}


def flip_heatmaps(heatmaps: torch.Tensor, flip_index: torch.Tensor | list[int]) -> torch.Tensor:
    """Mirror (B, K, h, w) heatmaps horizontally and swap left/right channels by ``flip_index``.

    Because pixel ``j`` mirrors to ``w - 1 - j`` (centre ``j + 0.5`` -> ``w - j - 0.5``), a plain
    ``torch.flip`` is exact in this package's pixel convention; no shift is needed.
    """
    idx = torch.as_tensor(flip_index, dtype=torch.long, device=heatmaps.device)
    return heatmaps.flip(-1).index_select(1, idx)


def body_flip_index() -> list[int]:
    """Channel flip index of BodyNet's 38 channels: keypoints by the spec; the left/right hand box
    channels swap, and within each box the corners mirror (TL<->TR, BR<->BL; centre stays)."""
    idx = list(BODY_FOOT.flip_index)
    k, n = NUM_BODY_KEYPOINTS, NUM_BOX_POINTS
    corner_mirror = [1, 0, 3, 2, 4]
    for pi in range(len(BOX_PARTS)):
        pj = int(BOX_FLIP_INDEX[pi])  # the part box this one becomes in the mirror (the hands swap)
        for q in range(n):
            idx.append(k + pj * n + corner_mirror[q])
    return idx

