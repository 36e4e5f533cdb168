"""Keypoint layouts as data.

A :class:`KeypointSpec` is the single description of a keypoint layout: names, the
slices of each part, OKS sigmas, the left/right flip index and the skeleton. Code never
indexes keypoint arrays with hand-written numbers; it asks the spec
(``COCO_WHOLEBODY.slice("lefthand")``, ``COCO_WHOLEBODY.flip_index``, ...).

``COCO_WHOLEBODY`` is built from ``resources/coco_wholebody.json`` shipped inside the
package (the facts of the COCO-WholeBody v1.0 layout).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources

import numpy as np

#: Part names in keypoint order; also the row order of evaluation tables.
PARTS: tuple[str, ...] = ("body", "foot", "face", "lefthand", "righthand")
#: The five parts and the whole body: the six evaluations of the official protocol.
EVAL_PARTS: tuple[str, ...] = PARTS + ("wholebody",)
#: Parts that carry an annotated box and are zoomed into by ZoomNet, in the model's order.
BOX_PARTS: tuple[str, ...] = ("face", "lefthand", "righthand")


def _mirror_name(name: str) -> str | None:
    """``left_x`` <-> ``right_x``; ``None`` for names without a side."""
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a) :]
    return None


@dataclass(frozen=True)
class KeypointSpec:
    """An immutable keypoint layout.

    Attributes:
        name: layout name.
        names: keypoint names, in order.
        sigmas: per-keypoint OKS sigmas, same order.
        part_ranges: part -> (start, stop) half-open index range, in keypoint order, covering
            every keypoint exactly once.
        extra_flip_pairs: mirror pairs that the names cannot tell (e.g. ``face-0``/``face-16``);
            every ``left_*``/``right_*`` pair is derived from the names.
        skeleton: edges as pairs of names.
        outline: drawing-only edges (e.g. face contours), pairs of names.
        upper_body / lower_body: names used by half-body augmentation.
        annotation_keys / valid_keys / box_keys / score_keys: the file-format field of each part.
    """

    name: str
    names: tuple[str, ...]
    sigmas: tuple[float, ...]
    part_ranges: Mapping[str, tuple[int, int]]
    extra_flip_pairs: tuple[tuple[str, str], ...] = ()
    skeleton: tuple[tuple[str, str], ...] = ()
    outline: tuple[tuple[str, str], ...] = ()
    upper_body: tuple[str, ...] = ()
    lower_body: tuple[str, ...] = ()
    annotation_keys: Mapping[str, str] = field(default_factory=dict)
    valid_keys: Mapping[str, str] = field(default_factory=dict)
    box_keys: Mapping[str, str] = field(default_factory=dict)
    score_keys: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.names)
        if len(set(self.names)) != k:
            raise ValueError(f"{self.name}: keypoint names are not unique")
        if len(self.sigmas) != k:
            raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
        covered = np.zeros(k, dtype=int)
        for part, (a, b) in self.part_ranges.items():
            if not 0 <= a < b <= k:
                raise ValueError(f"{self.name}: part {part!r} range {a}:{b} outside 0:{k}")
            covered[a:b] += 1
        if not (covered == 1).all():
            raise ValueError(f"{self.name}: parts must cover every keypoint exactly once")
        _ = self.flip_index  # validates the flip pairs eagerly

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.part_ranges)

    def slice(self, part: str) -> slice:
        """Index slice of ``part`` (``"wholebody"`` is every keypoint)."""
        if part == "wholebody":
            return slice(0, self.num_keypoints)
        try:
            a, b = self.part_ranges[part]
        except KeyError:
            raise KeyError(f"{self.name}: unknown part {part!r}; parts are {list(self.part_ranges)}") from None
        return slice(a, b)

    def num_part(self, part: str) -> int:
        s = self.slice(part)
        return s.stop - s.start

    def index(self, name: str) -> int:
        return self._index_of[name]

    def indices(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self._index_of[n] for n in names], dtype=np.int64)

    @cached_property
    def _index_of(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @cached_property
    def sigmas_array(self) -> np.ndarray:
        """(K,) float64 OKS sigmas (a fresh read-only array)."""
        a = np.asarray(self.sigmas, dtype=np.float64)
        a.setflags(write=False)
        return a

    def part_sigmas(self, part: str) -> np.ndarray:
        return self.sigmas_array[self.slice(part)]

    # ------------------------------------------------------------------ flips
    @cached_property
    def flip_index(self) -> np.ndarray:
        """(K,) int64: ``flipped[..., i, :] = kpts[..., flip_index[i], :]`` mirrors a layout.

        Derived from the names (``left_*`` <-> ``right_*``) plus ``extra_flip_pairs``; an
        involution by construction (checked).
        """
        idx = np.arange(self.num_keypoints)
        for i, n in enumerate(self.names):
            m = _mirror_name(n)
            if m is not None:
                if m not in self._index_of:
                    raise ValueError(f"{self.name}: {n!r} has no mirror {m!r}")
                idx[i] = self._index_of[m]
        for a, b in self.extra_flip_pairs:
            ia, ib = self._index_of[a], self._index_of[b]
            idx[ia], idx[ib] = ib, ia
        if not (idx[idx] == np.arange(self.num_keypoints)).all():
            raise ValueError(f"{self.name}: flip index is not an involution")
        idx.setflags(write=False)
        return idx

    def part_flip_index(self, part: str) -> np.ndarray:
        """Flip index local to a part whose mirror lies inside the part itself (body, foot, face).

        For the hands, flipping swaps the two parts; use :meth:`mirror_index` (or :attr:`flip_index`
        on 133-arrays).
        """
        if self.mirror_part(part) != part:
            raise ValueError(f"{self.name}: part {part!r} does not mirror onto itself")
        return self.mirror_index(part)

    def mirror_part(self, part: str) -> str:
        """The part a horizontal flip maps ``part`` onto, read from :attr:`flip_index`: itself for
        body, foot and face, the other hand for a hand."""
        onto = {self.part_of(int(i)) for i in self.flip_index[self.slice(part)]}
        if len(onto) != 1:
            raise ValueError(f"{self.name}: part {part!r} mirrors onto several parts {sorted(onto)}")
        return onto.pop()

    def mirror_index(self, part: str) -> np.ndarray:
        """(n,) int64 local flip index of ``part`` from its :meth:`mirror_part`: after a flip, keypoint
        ``i`` of ``part`` is keypoint ``mirror_index(part)[i]`` of the mirror part (the face's own
        mirrored order; for the hands, the other hand's joint order)."""
        return self.flip_index[self.slice(part)] - self.slice(self.mirror_part(part)).start

    # ------------------------------------------------------------------ skeleton
    @cached_property
    def skeleton_index(self) -> np.ndarray:
        """(E, 2) int64 edges of the dataset skeleton."""
        return np.array([[self._index_of[a], self._index_of[b]] for a, b in self.skeleton], dtype=np.int64)

    @cached_property
    def outline_index(self) -> np.ndarray:
        """(E, 2) int64 drawing-only edges (face contours)."""
        return np.array([[self._index_of[a], self._index_of[b]] for a, b in self.outline], dtype=np.int64).reshape(-1, 2)

    def part_of(self, i: int) -> str:
        for part, (a, b) in self.part_ranges.items():
            if a <= i < b:
                return part
        raise IndexError(i)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Mapping) -> KeypointSpec:
        pairs = lambda key: tuple(tuple(p) for p in d.get(key, ()))  # noqa: E731
        return cls(
            name=d["name"],
            names=tuple(d["names"]),
            sigmas=tuple(float(s) for s in d["sigmas"]),
            part_ranges={k: (int(v[0]), int(v[1])) for k, v in d["parts"].items()},
            extra_flip_pairs=pairs("face_flip_pairs"),
            skeleton=pairs("skeleton"),
            outline=pairs("face_outline"),
            upper_body=tuple(d.get("upper_body", ())),
            lower_body=tuple(d.get("lower_body", ())),
            annotation_keys=dict(d.get("annotation_keys", {})),
            valid_keys=dict(d.get("valid_keys", {})),
            box_keys=dict(d.get("box_keys", {})),
            score_keys=dict(d.get("score_keys", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> KeypointSpec:
        return cls.from_dict(json.loads(text))

    def subset(self, parts: Sequence[str], name: str | None = None) -> KeypointSpec:
        """A spec holding only ``parts`` (contiguous, in order), e.g. the 23 body+foot keypoints."""
        ranges = [self.part_ranges[p] for p in parts]
        for (_a0, b0), (a1, _) in zip(ranges, ranges[1:]):
            if b0 != a1:
                raise ValueError("subset parts must be contiguous and in order")
        start, stop = ranges[0][0], ranges[-1][1]
        keep = set(self.names[start:stop])
        return KeypointSpec(
            name=name or f"{self.name}[{'+'.join(parts)}]",
            names=self.names[start:stop],
            sigmas=self.sigmas[start:stop],
            part_ranges={p: (a - start, b - start) for p, (a, b) in zip(parts, ranges)},
            extra_flip_pairs=tuple(p for p in self.extra_flip_pairs if p[0] in keep and p[1] in keep),
            skeleton=tuple(e for e in self.skeleton if e[0] in keep and e[1] in keep),
            outline=tuple(e for e in self.outline if e[0] in keep and e[1] in keep),
            upper_body=tuple(n for n in self.upper_body if n in keep),
            lower_body=tuple(n for n in self.lower_body if n in keep),
            annotation_keys={p: self.annotation_keys[p] for p in parts if p in self.annotation_keys},
            valid_keys={p: self.valid_keys[p] for p in parts if p in self.valid_keys},
            box_keys={p: self.box_keys[p] for p in parts if p in self.box_keys},
            score_keys={p: self.score_keys[p] for p in parts if p in self.score_keys},
        )


def _load_coco_wholebody() -> KeypointSpec:
    text = resources.files("wholebody").joinpath("resources/coco_wholebody.json").read_text()
    return KeypointSpec.from_json(text)


#: The 133-keypoint COCO-WholeBody layout.
COCO_WHOLEBODY: KeypointSpec = _load_coco_wholebody()
#: The 23 body+foot keypoints that BodyNet predicts (indices 0:23 of COCO_WHOLEBODY).
BODY_FOOT: KeypointSpec = COCO_WHOLEBODY.subset(("body", "foot"), name="coco_wholebody_body_foot")
#: The 17 COCO body keypoints.
BODY: KeypointSpec = COCO_WHOLEBODY.subset(("body",), name="coco_body")


def _box_flip_index() -> np.ndarray:
    idx = np.array([BOX_PARTS.index(COCO_WHOLEBODY.mirror_part(p)) for p in BOX_PARTS], dtype=np.int64)
    idx.setflags(write=False)
    return idx


#: Part-box order after a horizontal flip, read from the spec's flip index: ``boxes[..., BOX_FLIP_INDEX, :]``
#: relabels (..., 3, 4) face / left hand / right hand boxes (and ``valid[..., BOX_FLIP_INDEX]`` their flags)
#: as the mirrored person's: the face stays, the two hands swap. An involution.
BOX_FLIP_INDEX: np.ndarray = _box_flip_index()
