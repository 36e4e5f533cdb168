import json

import numpy as np
import pytest

from wholebody.keypoints import (
    BODY_FOOT,
    BOX_FLIP_INDEX,
    BOX_PARTS,
    COCO_WHOLEBODY,
    EVAL_PARTS,
    PARTS,
    KeypointSpec,
)

S = COCO_WHOLEBODY


def test_parts_cover_every_keypoint_once():
    covered = np.zeros(S.num_keypoints, int)
    for p in PARTS:
        covered[S.slice(p)] += 1
    assert S.num_keypoints == 133
    assert (covered == 1).all()
    assert [S.num_part(p) for p in PARTS] == [17, 6, 68, 21, 21]
    assert S.slice("wholebody") == slice(0, 133)
    assert EVAL_PARTS[-1] == "wholebody"


def test_flip_index_is_involution_mapping_left_to_right():
    f = S.flip_index
    assert (f[f] == np.arange(133)).all()
    for i, n in enumerate(S.names):
        if n.startswith("left_"):
            assert S.names[f[i]] == "right_" + n[5:]
        if n.startswith("right_"):
            assert S.names[f[i]] == "left_" + n[6:]
    # the hands swap as whole parts, in the same joint order
    lh, rh = S.slice("lefthand"), S.slice("righthand")
    assert (f[lh] == np.arange(rh.start, rh.stop)).all()
    # a mirrored face maps the jaw ends onto each other, the nose bridge onto itself
    assert S.names[f[S.index("face-0")]] == "face-16"
    assert f[S.index("face-27")] == S.index("face-27")


def test_parts_mirror_by_the_flip_index_and_the_box_order_swaps_the_hands():
    assert {p: S.mirror_part(p) for p in PARTS} == {"body": "body", "foot": "foot", "face": "face",
                                                    "lefthand": "righthand", "righthand": "lefthand"}
    lh, rh = S.slice("lefthand"), S.slice("righthand")
    np.testing.assert_array_equal(S.mirror_index("lefthand") + rh.start, S.flip_index[lh])
    np.testing.assert_array_equal(S.mirror_index("righthand") + lh.start, S.flip_index[rh])
    np.testing.assert_array_equal(S.mirror_index("face"), S.part_flip_index("face"))
    with pytest.raises(ValueError, match="does not mirror onto itself"):
        S.part_flip_index("lefthand")
    # after a flip the face box stays and the hand boxes swap; flipping twice is the identity
    assert [BOX_PARTS[i] for i in BOX_FLIP_INDEX] == ["face", "righthand", "lefthand"]
    assert (BOX_FLIP_INDEX[BOX_FLIP_INDEX] == np.arange(len(BOX_PARTS))).all()
    with pytest.raises(ValueError):
        BOX_FLIP_INDEX[0] = 1
    split = KeypointSpec(name="x", names=("left_a", "right_a", "left_b", "right_b"), sigmas=(0.1,) * 4,
                         part_ranges={"p": (0, 1), "q": (1, 3), "r": (3, 4)})
    with pytest.raises(ValueError, match="several parts"):
        split.mirror_part("q")


def test_flip_index_is_read_only():
    with pytest.raises(ValueError):
        S.flip_index[0] = 3


def test_matches_reference_facts(reference_meta):
    ref = json.loads(reference_meta.read_text())
    assert list(S.names) == ref["names"]
    np.testing.assert_array_equal(S.sigmas_array, np.asarray(ref["sigmas"]))
    np.testing.assert_array_equal(S.flip_index, np.asarray(ref["flip_indices"]))
    assert S.skeleton_index.tolist() == ref["skeleton"]
    for part, key in [("body", "body"), ("foot", "foot"), ("face", "face"), ("lefthand", "left_hand"), ("righthand", "right_hand")]:
        a, b = ref["part_ranges"][key]
        assert S.slice(part) == slice(a, b + 1)


def test_body_foot_subset_is_first_23():
    assert BODY_FOOT.num_keypoints == 23
    assert BODY_FOOT.names == S.names[:23]
    np.testing.assert_array_equal(BODY_FOOT.flip_index, S.flip_index[:23])


def test_invalid_specs_are_rejected():
    base = dict(name="x", names=("a", "left_b", "right_b"), sigmas=(0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="exactly once"):
        KeypointSpec(**base, part_ranges={"p": (0, 2)})
    with pytest.raises(ValueError, match="sigmas"):
        KeypointSpec(**{**base, "sigmas": (0.1,)}, part_ranges={"p": (0, 3)})
    with pytest.raises(ValueError, match="no mirror"):
        KeypointSpec(**{**base, "names": ("a", "left_b", "c")}, part_ranges={"p": (0, 3)})
    ok = KeypointSpec(**base, part_ranges={"p": (0, 3)})
    assert ok.flip_index.tolist() == [0, 2, 1]
