"""Synthetic people: a 2-D pose model carrying all 133 COCO-WholeBody keypoints, and a renderer that
draws exactly what it annotates.

A figure faces the camera (its left side on the image's right), so left and right are told apart by
geometry and stay consistent under a horizontal flip (a mirrored front view is again a front view
with sides swapped); limbs of the two sides also get distinct colours. Every keypoint is drawn:

* body joints as round markers coloured by joint type (shoulder, elbow, ...) on side-coloured limbs;
* the 68 face landmarks as the vertices of the drawn jaw, brows, eyes, nose and lip contours; the body
  eyes are the pupils, the body nose the nose tip, the ears small ellipses at the sides of the head;
* 21 joints per hand along five fingers of fixed colours (thumb red ... little finger blue), with a
  palm of the right chirality;
* big toe, small toe and heel as the corners of a shoe.

The renderer paints an RGB image and, with the same primitives, a layer-id map (uint16). Each keypoint
belongs to the layer it is painted in; it is visible when the id map still holds that layer at its
pixel after everything else is drawn (later people and occluders hide it). Coordinates follow the
package's pixel convention (pixel ``i`` covers ``[i, i+1)``); OpenCV is fed ``p - 0.5`` in fixed point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from wholebody.keypoints import COCO_WHOLEBODY as SPEC

_SHIFT = 4
_ONE = 1 << _SHIFT
_IDX = SPEC.index

SKIN = np.array([(255, 219, 186), (241, 194, 156), (205, 150, 110), (160, 105, 72), (105, 70, 48)], np.float64)
HAIR = np.array([(40, 30, 20), (90, 60, 30), (20, 20, 20), (170, 130, 70), (120, 120, 120)], np.float64)
SIDE = {"left": (220, 40, 40), "right": (40, 90, 225)}
JOINT = {
    "shoulder": (255, 230, 0), "elbow": (255, 0, 255), "wrist": (0, 255, 255), "hip": (255, 140, 0),
    "knee": (160, 90, 255), "ankle": (255, 255, 255), "big_toe": (0, 255, 120), "small_toe": (0, 150, 60),
    "heel": (255, 120, 190),
}
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
FINGER_RGB = ((255, 50, 50), (255, 160, 0), (235, 235, 0), (0, 200, 70), (0, 150, 255))


def _cv(p: np.ndarray) -> np.ndarray:
    """Package px -> OpenCV fixed point (pixel centres at integers)."""
    return np.rint((p - 0.5) * _ONE).astype(np.int32)


def _dir(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` degrees from straight down (y points down), turning toward +x."""
    a = np.deg2rad(angle)
    return np.array([np.sin(a), np.cos(a)])


class Canvas:
    """An RGB image and its layer-id map, painted with the same primitives (image anti-aliased)."""

    OCCLUDER = 65535

    def __init__(self, image: np.ndarray):
        self.image = image
        self.ids = np.zeros(image.shape[:2], np.uint16)
        self._next = 1

    def new_layer(self) -> int:
        self._next += 1
        if self._next >= self.OCCLUDER:
            raise RuntimeError("too many layers in one synthetic image")
        return self._next - 1

    def _both(self, fn, color, layer, *args, **kw) -> None:
        fn(self.image, *args, color=tuple(map(int, color)), lineType=cv2.LINE_AA, shift=_SHIFT, **kw)
        fn(self.ids, *args, color=int(layer), lineType=cv2.LINE_8, shift=_SHIFT, **kw)

    def polyline(self, pts, color, layer, thickness=1, closed=False) -> None:
        self._both(cv2.polylines, color, layer, [_cv(pts)], closed, thickness=max(1, int(round(thickness))))

    def fill(self, pts, color, layer) -> None:
        self._both(cv2.fillPoly, color, layer, [_cv(pts)])

    def line(self, p, q, color, layer, thickness) -> None:
        self._both(cv2.line, color, layer, tuple(_cv(p).tolist()), tuple(_cv(q).tolist()),
                   thickness=max(1, int(thickness + 0.5)))

    def circle(self, c, r, color, layer) -> None:
        self._both(cv2.circle, color, layer, tuple(_cv(c).tolist()), int(max(r, 0.5) * _ONE + 0.5), thickness=-1)

    def ellipse(self, c, axes, angle, color, layer) -> None:
        ax = (int(round(max(axes[0], 0.5) * _ONE)), int(round(max(axes[1], 0.5) * _ONE)))
        self._both(cv2.ellipse, color, layer, tuple(_cv(c)), ax, float(angle), 0.0, 360.0, thickness=-1)


# ----------------------------------------------------------------------------- face template
def _face_template(rng: np.random.Generator) -> np.ndarray:
    """(68, 2) landmarks in head units (x across, -1..1 = head half-width; y down, head half-height)."""
    f = np.zeros((68, 2))
    phi = np.deg2rad(np.linspace(-8, 188, 17))
    f[0:17] = np.stack([-0.97 * np.cos(phi), 0.97 * np.sin(phi)], 1)  # jaw on the head outline, subject's right first
    t = np.linspace(0, 1, 5)
    brow_y = rng.uniform(-0.47, -0.38) - 0.08 * np.sin(np.pi * t)
    f[17:22] = np.stack([-0.72 + 0.54 * t, brow_y], 1)  # right brow, outer -> inner
    f[22:27] = np.stack([0.18 + 0.54 * t, brow_y[::-1]], 1)  # left brow, inner -> outer
    f[27:31] = np.stack([np.zeros(4), [-0.32, -0.2, -0.08, 0.05]], 1)  # bridge, 30 = tip
    f[31:36] = np.stack([[-0.16, -0.08, 0, 0.08, 0.16], [0.16, 0.19, 0.21, 0.19, 0.16]], 1)
    hw, hh = 0.2, 0.085 * rng.uniform(0.6, 1.2)
    eye = np.array([[-hw, 0], [-hw / 3, -hh], [hw / 3, -hh], [hw, 0], [hw / 3, hh], [-hw / 3, hh]])
    f[36:42] = eye + [-0.42, -0.25]  # right eye: outer corner, upper lid, inner corner, lower lid
    f[42:48] = eye + [0.42, -0.25]  # left eye: inner corner first
    mw, o = rng.uniform(0.24, 0.34), rng.uniform(0.0, 0.1)
    u = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1, 0.6, 0.25, 0, -0.25, -0.6])
    v = np.array([0, -0.08, -0.11, -0.08, -0.11, -0.08, 0, 0.1 + o, 0.13 + o, 0.14 + o, 0.13 + o, 0.1 + o])
    f[48:60] = np.stack([u * mw, 0.45 + v], 1)
    u = np.array([-0.75, -0.35, 0, 0.35, 0.75, 0.35, 0, -0.35])
    v = np.array([0.01, -0.03, -0.03, -0.03, 0.01, 0.04 + o, 0.045 + o, 0.04 + o])
    f[60:68] = np.stack([u * mw, 0.45 + v], 1)
    return f


# ----------------------------------------------------------------------------- pose model
@dataclass
class Figure:
    """A person in image px: 133 keypoints plus the shapes drawn around them."""

    keypoints: np.ndarray  # (133, 2)
    shapes: dict[str, np.ndarray] = field(default_factory=dict)  # named point sets, image px
    sizes: dict[str, float] = field(default_factory=dict)  # thicknesses and radii, image px
    angles: dict[str, float] = field(default_factory=dict)  # OpenCV ellipse angles (degrees)
    draw_face: bool = True
    draw_hands: tuple[bool, bool] = (True, True)  # left, right
    draw_feet: bool = True
    back_view: bool = False

    def transform(self, scale: float, rotation: float, offset: np.ndarray) -> Figure:
        """Scale, rotate (degrees, about the origin) and translate every point; returns self."""
        c, s = np.cos(np.deg2rad(rotation)), np.sin(np.deg2rad(rotation))
        r = np.array([[c, -s], [s, c]]) * scale
        self.keypoints = self.keypoints @ r.T + offset
        self.shapes = {k: v @ r.T + offset for k, v in self.shapes.items()}
        self.sizes = {k: v * scale for k, v in self.sizes.items()}
        self.angles = {k: v + rotation for k, v in self.angles.items()}
        return self

    def extent(self) -> np.ndarray:
        pts = np.concatenate([self.keypoints] + list(self.shapes.values()))
        return np.concatenate([pts.min(0), pts.max(0)])


def sample_figure(rng: np.random.Generator, back_view: bool = False) -> Figure:
    """A random pose in person units (height 1, pelvis at the origin, y down), facing the camera."""
    kp = np.zeros((SPEC.num_keypoints, 2))
    sh: dict[str, np.ndarray] = {}
    g = rng.uniform(0.9, 1.1)  # build
    lean = rng.uniform(-12, 12)
    down, right = _dir(lean), _dir(lean + 90)
    up = -down
    neck = up * 0.29 * rng.uniform(0.95, 1.05)
    for s, side in ((1, "left"), (-1, "right")):
        kp[_IDX(f"{side}_shoulder")] = neck + s * right * 0.105 * g + down * rng.uniform(0, 0.015)
        kp[_IDX(f"{side}_hip")] = s * right * 0.065 * g
    sh["torso"] = np.stack([kp[_IDX("left_shoulder")], kp[_IDX("left_hip")], kp[_IDX("right_hip")],
                            kp[_IDX("right_shoulder")], neck + up * 0.02])
    sh["neck"] = np.stack([neck, neck + up * 0.05])

    tilt = lean + rng.uniform(-15, 15)
    hup = -_dir(tilt)
    head_c = neck + hup * 0.115
    hw, hh = 0.062 * g, 0.078
    yaw = np.deg2rad(rng.uniform(-15, 15))
    face = _face_template(rng)
    face[:, 0] = np.sin(np.arcsin(np.clip(face[:, 0] * 0.95, -1, 1)) + yaw) / 0.95
    hright = _dir(tilt + 90)
    to_img = lambda p: head_c + p[..., :1] * hw * hright + p[..., 1:] * hh * (-hup)  # noqa: E731
    face_pts = to_img(face)
    kp[SPEC.slice("face")] = face_pts
    kp[_IDX("nose")] = face_pts[30]
    kp[_IDX("left_eye")] = face_pts[42:48].mean(0)
    kp[_IDX("right_eye")] = face_pts[36:42].mean(0)
    ear_y = rng.uniform(-0.3, -0.1)
    kp[_IDX("left_ear")] = to_img(np.array([1.02, ear_y]))
    kp[_IDX("right_ear")] = to_img(np.array([-1.02, ear_y]))
    sh["head"] = np.stack([head_c, head_c + hright * hw, head_c - hup * hh])
    top = np.deg2rad(np.linspace(188, 352, 15))
    cranium = to_img(np.stack([-0.97 * np.cos(top), 0.97 * np.sin(top)], 1))
    sh["head_outline"] = np.concatenate([face_pts[0:17], cranium])
    sh["hair"] = to_img(np.array([[-1.0, -0.35], [-0.9, -0.8], [-0.45, -1.05], [0.45, -1.05], [0.9, -0.8], [1.0, -0.35],
                                  [0.6, -0.55], [0.0, -0.62], [-0.6, -0.55]]))
    angles = {"head": -tilt}  # OpenCV ellipse angle: the head's x axis is _dir(tilt + 90)
    sizes = {"head_w": hw, "head_h": hh, "ear": 0.16 * hw}

    for s, side in ((1, "left"), (-1, "right")):
        shoulder = kp[_IDX(f"{side}_shoulder")]
        a1 = lean + s * rng.uniform(-25, 170)
        elbow = shoulder + 0.16 * g * _dir(a1)
        a2 = a1 + s * rng.uniform(-150, 150)
        wrist = elbow + 0.145 * g * _dir(a2)
        kp[_IDX(f"{side}_elbow")], kp[_IDX(f"{side}_wrist")] = elbow, wrist
        _hand(rng, kp, sh, side, s, wrist, a2 + rng.uniform(-25, 25), 0.105 * g * rng.uniform(0.9, 1.1))
        hip = kp[_IDX(f"{side}_hip")]
        b1 = lean + s * rng.uniform(-12, 50)
        knee = hip + 0.23 * _dir(b1)
        b2 = b1 + s * rng.uniform(-45, 35)
        ankle = knee + 0.22 * _dir(b2)
        kp[_IDX(f"{side}_knee")], kp[_IDX(f"{side}_ankle")] = knee, ankle
        fa = b2 + s * rng.uniform(10, 60)
        heel = ankle + 0.04 * _dir(b2)
        out = s * _dir(fa + 90)
        kp[_IDX(f"{side}_heel")] = heel
        kp[_IDX(f"{side}_big_toe")] = heel + 0.075 * _dir(fa) - 0.018 * out
        kp[_IDX(f"{side}_small_toe")] = heel + 0.06 * _dir(fa) + 0.022 * out
        sh[f"{side}_shoe"] = np.stack([ankle - 0.012 * out, kp[_IDX(f"{side}_big_toe")],
                                       kp[_IDX(f"{side}_small_toe")], heel + 0.01 * out])
    sizes.update({"upper_arm": 0.045 * g, "forearm": 0.038 * g, "thigh": 0.06 * g, "shin": 0.05 * g,
                  "marker": 0.021, "finger": 0.011, "hand_dot": 0.007, "neck": 0.05 * g})
    fig = Figure(kp, sh, sizes, angles, back_view=back_view)
    if back_view:  # seen from behind: the front view mirrored, identities kept (left side on the image left)
        fig.keypoints[:, 0] *= -1
        fig.shapes = {k: v * [-1, 1] for k, v in fig.shapes.items()}
        fig.angles = {k: -v for k, v in fig.angles.items()}
    return fig


def _hand(rng, kp, sh, side: str, s: int, wrist, angle: float, length: float) -> None:
    """21 hand joints: along = the hand's axis, the thumb on the side that makes the hand a ``side`` hand
    seen palm-forward."""
    along, thumb_side = _dir(angle), _dir(angle + s * 90)
    at = lambda a, c: wrist + length * (a * along + c * thumb_side)  # noqa: E731
    base = SPEC.index(f"{side}_hand_root")
    kp[base] = wrist
    mcp = {"forefinger": (0.45, 0.17), "middle_finger": (0.47, 0.055), "ring_finger": (0.45, -0.06),
           "pinky_finger": (0.4, -0.16)}
    spread = {"forefinger": 10, "middle_finger": 0, "ring_finger": -9, "pinky_finger": -18}
    seg = {"forefinger": 0.95, "middle_finger": 1.0, "ring_finger": 0.95, "pinky_finger": 0.78}
    for fi, finger in enumerate(FINGERS):
        if finger == "thumb":
            start = at(0.1, 0.15)
            direction = angle + s * rng.uniform(30, 65)
            lengths = np.array([0.16, 0.13, 0.11])
        else:
            start = at(*mcp[finger])
            direction = angle + s * (spread[finger] + rng.uniform(-8, 8))
            lengths = np.array([0.22, 0.14, 0.11]) * seg[finger]
        curl = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
        pts = [start]
        for j, seg_len in enumerate(lengths):
            d = direction - s * curl * 25 * (j + 1) * (1 if finger != "thumb" else -0.5)
            pts.append(pts[-1] + length * seg_len * (1 - 0.55 * curl) * _dir(d))
        i0 = base + 1 + 4 * fi
        kp[i0:i0 + 4] = pts
    sh[f"{side}_palm"] = np.stack([at(0.0, 0.12), at(0.46, 0.2), at(0.4, -0.2), at(0.0, -0.13)])


# ----------------------------------------------------------------------------- drawing
@dataclass
class Style:
    """Colours of one figure (RGB)."""

    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    shoes: np.ndarray
    side_colours: bool = True

    @classmethod
    def sample(cls, rng: np.random.Generator, side_colours: bool = True) -> Style:
        shirt = cv2.cvtColor(np.uint8([[[rng.integers(0, 180), rng.integers(60, 200), rng.integers(90, 230)]]]),
                             cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
        return cls(skin=SKIN[rng.integers(len(SKIN))], hair=HAIR[rng.integers(len(HAIR))], shirt=shirt,
                   shoes=np.array([rng.integers(20, 90)] * 3, np.float64), side_colours=side_colours)

    def limb(self, side: str, shade: float = 1.0) -> np.ndarray:
        base = np.array(SIDE[side] if self.side_colours else (150, 150, 150), np.float64)
        return np.clip(base * shade, 0, 255)


def draw_figure(canvas: Canvas, fig: Figure, style: Style) -> tuple[np.ndarray, tuple[int, int]]:
    """Paint ``fig``; returns the layer owning each keypoint (133,) (0: not drawn) and the layer range."""
    kp, sh, sz = fig.keypoints, fig.shapes, fig.sizes
    owner = np.zeros(SPEC.num_keypoints, np.int64)
    m = max(1.5, sz["marker"])
    first = body = canvas.new_layer()
    # legs and shoes, torso, then the arms over the torso
    for side in ("left", "right"):
        hip, knee, ankle = (kp[_IDX(f"{side}_{j}")] for j in ("hip", "knee", "ankle"))
        canvas.line(hip, knee, style.limb(side, 0.85), body, max(2, sz["thigh"]))
        canvas.line(knee, ankle, style.limb(side, 0.7), body, max(2, sz["shin"]))
    canvas.fill(sh["torso"], style.shirt, body)
    canvas.line(*sh["neck"], style.skin * 0.9, body, max(2, sz["neck"]))
    feet = canvas.new_layer()
    if fig.draw_feet:
        for side in ("left", "right"):
            canvas.fill(sh[f"{side}_shoe"], style.shoes, feet)
            for j in ("big_toe", "small_toe", "heel"):
                canvas.circle(kp[_IDX(f"{side}_{j}")], 0.7 * m, JOINT[j], feet)
                owner[_IDX(f"{side}_{j}")] = feet
    head = canvas.new_layer()
    _draw_head(canvas, fig, style, head, owner)
    arms = canvas.new_layer()
    for side in ("left", "right"):
        sh_, el, wr = (kp[_IDX(f"{side}_{j}")] for j in ("shoulder", "elbow", "wrist"))
        canvas.line(sh_, el, style.limb(side, 1.0), arms, max(2, sz["upper_arm"]))
        canvas.line(el, wr, style.limb(side, 0.8), arms, max(2, sz["forearm"]))
    for hi, side in enumerate(("left", "right")):
        if fig.draw_hands[hi]:
            hand = canvas.new_layer()
            _draw_hand(canvas, fig, style, side, hand, owner)
    markers = canvas.new_layer()
    for side in ("left", "right"):
        for j in ("shoulder", "elbow", "hip", "knee", "ankle") + (("wrist",) if not fig.draw_hands[side == "right"] else ()):
            canvas.circle(kp[_IDX(f"{side}_{j}")], m, JOINT[j], markers)
            owner[_IDX(f"{side}_{j}")] = markers
        if fig.draw_hands[side == "right"]:
            owner[_IDX(f"{side}_wrist")] = owner[_IDX(f"{side}_hand_root")]
    return owner, (first, markers)


def _draw_head(canvas: Canvas, fig: Figure, style: Style, layer: int, owner: np.ndarray) -> None:
    kp, sh, sz = fig.keypoints, fig.shapes, fig.sizes
    c = sh["head"][0]
    hw, hh, ang = sz["head_w"], sz["head_h"], fig.angles["head"]
    for side in ("left", "right"):
        canvas.ellipse(kp[_IDX(f"{side}_ear")], (sz["ear"] * 1.1, sz["ear"] * 1.6), ang, style.skin * 0.8, layer)
        owner[_IDX(f"{side}_ear")] = layer
    canvas.fill(sh["head_outline"], style.skin, layer)
    if fig.back_view:
        canvas.ellipse(c, (hw * 0.97, hh * 0.97), ang, style.hair, layer)
        return
    canvas.fill(sh["hair"], style.hair, layer)
    f = kp[SPEC.slice("face")]
    dot = max(0.6, 0.07 * hw)
    if fig.draw_face:
        line = max(1, int(round(0.03 * hw)))
        tint = {"left": np.array(SIDE["left"]) * 0.6, "right": np.array(SIDE["right"]) * 0.6}
        if not style.side_colours:
            tint = {"left": np.zeros(3) + 40, "right": np.zeros(3) + 40}
        canvas.polyline(f[0:17], style.skin * 0.55, layer, line)
        canvas.polyline(f[17:22], tint["right"], layer, max(line, 0.12 * hw))
        canvas.polyline(f[22:27], tint["left"], layer, max(line, 0.12 * hw))
        canvas.fill(f[36:42], (250, 250, 250), layer)
        canvas.fill(f[42:48], (250, 250, 250), layer)
        canvas.polyline(f[36:42], tint["right"], layer, line, closed=True)
        canvas.polyline(f[42:48], tint["left"], layer, line, closed=True)
        canvas.polyline(f[27:31], style.skin * 0.5, layer, line)
        canvas.polyline(f[31:36], style.skin * 0.5, layer, line)
        canvas.fill(f[48:60], (200, 60, 80), layer)
        canvas.polyline(f[60:68], (90, 20, 30), layer, line, closed=True)
        owner[SPEC.slice("face")] = layer
    for name in ("left_eye", "right_eye"):
        canvas.circle(kp[_IDX(name)], dot, (10, 10, 10), layer)
    canvas.circle(kp[_IDX("nose")], dot, (120, 40, 30), layer)
    owner[[_IDX("nose"), _IDX("left_eye"), _IDX("right_eye")]] = layer


def _draw_hand(canvas: Canvas, fig: Figure, style: Style, side: str, layer: int, owner: np.ndarray) -> None:
    kp, sz = fig.keypoints, fig.sizes
    sl = SPEC.slice("lefthand" if side == "left" else "righthand")
    h = kp[sl]
    canvas.fill(fig.shapes[f"{side}_palm"], style.skin, layer)
    width, dot = max(1, sz["finger"]), max(0.6, sz["hand_dot"])
    for fi in range(5):
        pts = h[1 + 4 * fi:5 + 4 * fi]
        canvas.line(h[0], pts[0], style.skin * 0.8, layer, width)
        canvas.polyline(pts, FINGER_RGB[fi], layer, width)
    for fi in range(5):
        for j in range(4):
            canvas.circle(h[1 + 4 * fi + j], dot, np.clip(np.array(FINGER_RGB[fi]) * 0.5 + 127, 0, 255), layer)
    canvas.circle(h[0], dot * 1.5, JOINT["wrist"], layer)
    owner[sl] = layer
