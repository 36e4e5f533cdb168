"""Scoring predictions on an extracted WholeBody-Face / WholeBody-Hand set with the package's crop
metrics (:mod:`wholebody.evaluation.crops`): EPE in crop px, and NME normalised by the inter-ocular
distance (faces) or by ``sqrt(w * h)`` of the hand box (hands).

Predictions are a COCO-style results list, one row per crop: ``{"image_id": <crop image id>,
"keypoints": [x, y, score] * K}`` in crop px. Only the ground truth's labelled keypoints count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wholebody.cocowb import json_id, read_json, value_problem
from wholebody.datatools.extract import CropSet, load_crop_set
from wholebody.geometry import keypoints_from_file


def _crop_image_ids(cs: CropSet) -> list[int]:
    import orjson

    data = orjson.loads(cs.annotation_file.read_bytes())
    return [int(a["image_id"]) for a in data["annotations"]]


def predictions_array(cs: CropSet, rows: Sequence[dict], source: str = "<predictions>") -> np.ndarray:
    """(N, K, 2) predicted crop px in the set's order; every crop needs exactly one row."""
    ids = _crop_image_ids(cs)
    k = cs.keypoints.shape[1]
    by_id: dict[int, np.ndarray] = {}
    for i, r in enumerate(rows):  # (int() and np.asarray took true as 1, 7.9 as 7 and "12.5" as 12.5)
        if not isinstance(r, dict):
            raise ValueError(f"{source}: row #{i} is not an object")
        img_id = json_id(r.get("image_id"))  # (an integer, or a float with an integral value)
        if img_id is None:
            raise ValueError(f"{source}: row #{i}: 'image_id' must be an integer, got {r.get('image_id')!r}")
        problem = value_problem(r.get("keypoints"), "keypoints", 3 * k)  # a flat list of 3K finite JSON numbers
        if problem is not None:
            raise ValueError(f"{source}: row #{i} (image_id {img_id}): {problem}")
        kp = np.array(r["keypoints"], dtype=np.float64)
        if img_id in by_id:
            raise ValueError(f"{source}: row #{i}: a second prediction for image_id {img_id}")
        by_id[img_id] = keypoints_from_file(kp.reshape(k, 3), labelled_only=False)[:, :2]  # COCO px, as the set
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{source}: {len(missing)} of {len(ids)} crops have no prediction (first: image_id {missing[0]})")
    unknown = sorted(set(by_id) - set(ids))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} predictions name no crop of the set (first: image_id {unknown[0]})")
    return np.stack([by_id[i] for i in ids]) if ids else np.zeros((0, k, 2))


def evaluate_crops(crop_set: str | Path | CropSet, predictions: str | Path | Sequence[dict]) -> dict:
    """EPE and NME of predictions on one extracted set (``OUT/face`` or ``OUT/hand``)."""
    from wholebody.evaluation.crops import epe, face_nme, hand_nme

    cs = crop_set if isinstance(crop_set, CropSet) else load_crop_set(crop_set)
    source = "<predictions>"
    if isinstance(predictions, (str, Path)):
        source = str(predictions)
        if not Path(predictions).is_file():
            raise FileNotFoundError(f"predictions file not found: {predictions}")
        predictions = read_json(predictions)  # (one line naming the file when it is not JSON)
    if not isinstance(predictions, list):
        raise ValueError(f"{source}: expected a list of result rows")
    pred = predictions_array(cs, predictions, source)
    gt, mask = cs.keypoints[..., :2], cs.keypoints[..., 2] > 0
    is_hand = cs.side is not None
    out = {
        "set": "hand" if is_hand else "face",
        "crops": int(gt.shape[0]),
        "keypoints": int(mask.sum()),
        "EPE": epe(pred, gt, mask),
        "NME": hand_nme(pred, gt, cs.boxes, mask) if is_hand else face_nme(pred, gt, mask),
        "NME_normaliser": "sqrt(w*h) of the hand box" if is_hand else "inter-ocular distance (outer eye corners)",
    }
    return out
