"""WholeBodyEstimator and checkpoints: loading (and refusing) checkpoints, crops identical to
validation's, batching, mapping back to image px, results rows, on synthetic data and the real sample."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
import torch

from wholebody.data.coco import load_coco_wholebody
from wholebody.data.dataset import TopDownDataset
from wholebody.evaluation.distributed import result_key
from wholebody.images import read_image
from wholebody.inference import (
    CheckpointError,
    InferenceError,
    WholeBodyEstimator,
    build_net,
    load_checkpoint,
    person_crops,
    write_checkpoint,
)
from wholebody.keypoints import COCO_WHOLEBODY
from wholebody.models.postprocess import to_image

pytestmark = pytest.mark.usefixtures("one_thread")




def _records(memorised):
    return load_coco_wholebody(memorised.ann_file, memorised.image_dir).records


# ----------------------------------------------------------------------------- checkpoints
def test_from_checkpoint_rebuilds_the_network_with_its_weights_and_settings(tiny_ckpt, tiny_config):
    path, net = tiny_ckpt
    est = WholeBodyEstimator.from_checkpoint(path)
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in est.net.state_dict().items())
    assert est.input_size == tuple(tiny_config["input_size"]) == (96, 128)
    assert est.refine == tiny_config["refine"] and est.flip_test is False and not est.net.training
    assert est.info.net_class == "wholebody.models.zoomnet.ZoomNet"
    assert WholeBodyEstimator.from_checkpoint(path, refine="none", flip_test=True).flip_test


def test_checkpoint_problems_are_one_line_errors(tmp_path, tiny_ckpt, tiny_config):
    path, net = tiny_ckpt
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(path.read_bytes()[: 5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as e:
        load_checkpoint(broken)
    assert "\n" not in str(e.value) and str(broken) in str(e.value)
    plain = tmp_path / "plain.pt"
    torch.save(net.state_dict(), plain)
    with pytest.raises(CheckpointError, match="without a 'wholebody' entry"):
        load_checkpoint(plain)
    # a checkpoint whose weights belong to another configuration: shapes differ
    other_cfg = {**tiny_config, "net": {**tiny_config["net"], "head_widths": [16, 32, 64]}}
    other = tmp_path / "other.ckpt"
    write_checkpoint(build_net(other_cfg), other, tiny_config)
    with pytest.raises(CheckpointError, match="shape") as e:
        load_checkpoint(other)
    assert "\n" not in str(e.value)
    # weights of another network class altogether: names differ
    obj = torch.load(path, weights_only=True)
    obj["state_dict"] = {"net.backbone.conv.weight": torch.zeros(3)}
    foreign = tmp_path / "foreign.ckpt"
    torch.save(obj, foreign)
    with pytest.raises(CheckpointError, match="another model"):
        load_checkpoint(foreign)
    obj = torch.load(path, weights_only=True)
    obj["wholebody"]["model_config"]["net"]["_target_"] = "wholebody.models.NoSuchNet"
    bad_target = tmp_path / "target.ckpt"
    torch.save(obj, bad_target)
    with pytest.raises(CheckpointError, match="is not one of the package's classes"):
        load_checkpoint(bad_target)


def test_a_checkpoint_of_a_real_lightning_training_run_loads(tmp_path, memorised, tiny_config):
    import lightning.pytorch as L
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from wholebody.training.module import PoseModule

    torch.manual_seed(0)
    net = build_net(tiny_config).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    module = PoseModule(net, instantiate(tiny_config["loss"]), optimizer=partial(torch.optim.Adam, lr=1e-2),
                        input_size=tiny_config["input_size"], refine=tiny_config["refine"], model_config=tiny_config)
    ds = TopDownDataset(_records(memorised), tiny_config["input_size"], train=True)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(ds, batch_size=2))
    ckpt = tmp_path / "lightning.ckpt"
    trainer.save_checkpoint(ckpt)
    est = WholeBodyEstimator.from_checkpoint(ckpt)
    loaded = est.net.state_dict()
    trained = module.net.state_dict()
    assert all(torch.equal(loaded[k], trained[k].cpu()) for k in trained)
    assert any(not torch.equal(before[k], trained[k]) for k in trained if trained[k].is_floating_point())


# ----------------------------------------------------------------------------- crops and mapping
def test_estimator_matches_the_validation_path_and_batching_changes_nothing(memorised):
    records = _records(memorised)
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    ds = TopDownDataset(records, est.input_size)
    samples = [ds[i] for i in range(len(ds))]
    images = torch.stack([s["image"] for s in samples])
    meta = {k: torch.stack([s["meta"][k] for s in samples]) for k in samples[0]["meta"]}
    with torch.no_grad():
        ref = to_image(est.net.predict(images, refine=est.refine), meta, est.input_size)

    by_image = {}
    for i, r in enumerate(records):
        by_image.setdefault(r.image_path, []).append(i)
    paths = sorted(by_image)
    boxes = [np.stack([records[i].bbox for i in by_image[p]]) for p in paths]
    batched = est.estimate_many(paths, boxes)  # every person of every image in one forward pass
    single = WholeBodyEstimator.from_checkpoint(memorised.ckpt, batch_size=1)
    order = [i for p in paths for i in by_image[p]]
    kpts = np.concatenate([r.keypoints for r in batched])
    assert kpts.shape == (len(records), COCO_WHOLEBODY.num_keypoints, 3)
    np.testing.assert_allclose(kpts, ref["keypoints"][order], atol=1e-4)
    np.testing.assert_allclose(np.concatenate([r.part_boxes for r in batched]), ref["part_boxes"][order], atol=1e-4)
    for p, res in zip(paths, batched):
        one = single(p, boxes=np.stack([records[i].bbox for i in by_image[p]]))
        np.testing.assert_allclose(one.keypoints, res.keypoints, atol=1e-4)


def test_memorised_persons_come_back_at_their_image_positions(memorised):
    """The whole chain crop -> network -> decode -> image px, on persons the network has learnt."""
    records = _records(memorised)
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    errors = []
    for r in records:
        res = est(r.image_path, boxes=r.bbox[None])
        vis = r.keypoints[:, 2] > 0
        errors.append(np.linalg.norm(res.keypoints[0, vis, :2] - r.keypoints[vis, :2], axis=1))
        valid = r.part_valid
        pred_c = (res.part_boxes[0, :, :2] + res.part_boxes[0, :, 2:]) / 2
        gt_c = (r.part_boxes[:, :2] + r.part_boxes[:, 2:]) / 2
        side = (r.part_boxes[:, 2:] - r.part_boxes[:, :2]).max(axis=1)
        assert (np.linalg.norm(pred_c - gt_c, axis=1)[valid] < 0.25 * side[valid]).all()
    err = np.concatenate(errors)
    assert np.median(err) < 1.5, f"median keypoint error {np.median(err):.2f} px"


def test_rgb_bgr_and_file_inputs_agree(memorised):
    r = _records(memorised)[0]
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    bgr = read_image(r.image_path)
    a = est(r.image_path, boxes=r.bbox)
    b = est(bgr[:, :, ::-1].copy(), boxes=r.bbox)
    c = est(bgr, boxes=r.bbox, bgr=True)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.keypoints, c.keypoints)
    crops_rgb, _ = person_crops(bgr[:, :, ::-1], r.bbox[None], est.input_size)
    crops_bgr, _ = person_crops(bgr, r.bbox[None], est.input_size, bgr=True)
    np.testing.assert_array_equal(crops_rgb, crops_bgr)


def test_boxes_scores_and_bad_boxes(memorised):
    r = _records(memorised)[0]
    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    image = read_image(r.image_path)[:, :, ::-1].copy()
    h, w = image.shape[:2]
    full = est(image, "full")
    assert len(full) == 1 and full.person_boxes.tolist() == [[0, 0, w, h]]
    with pytest.raises(InferenceError, match="no person boxes"):
        est(image)
    with pytest.raises(ValueError, match="no area inside"):
        est(image, boxes=[[w + 5, 0, w + 50, 40]])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        est(image, boxes=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        est(image, boxes=[[0, 0, np.nan, 10]])
    empty = est(image, boxes=np.zeros((0, 4)))
    assert len(empty) == 0 and empty.rows(1) == []
    # a box sticking out of the image is clipped to it, as the data loaders clip
    clipped = est(image, boxes=[[-20, -20, w / 2, h / 2]])
    assert clipped.person_boxes.tolist() == [[0, 0, w / 2, h / 2]]
    # person scores scale the part scores; rows carry the person keys the evaluator de-duplicates by
    a = est(image, boxes=[r.bbox, r.bbox], scores=[1.0, 0.5])
    rows = a.rows(7, ids=[11, 12], id_field="bbox_id")
    assert [result_key(x) for x in rows] == [(7, "bbox_id", 11), (7, "bbox_id", 12)]
    assert all("ann_id" not in x for x in rows)
    assert rows[1]["score"] == pytest.approx(0.5 * rows[0]["score"])
    assert rows[1]["face_box_score"] == pytest.approx(0.5 * rows[0]["face_box_score"])
    gt_rows = a.rows(7, ids=[5, 6], id_field="ann_id")
    assert [result_key(x) for x in gt_rows] == [(7, "ann_id", 5), (7, "ann_id", 6)]
    assert all("bbox_id" not in x for x in gt_rows)
    # rows are a results file's: COCO's pixel indices, 0.5 px up-left of the package's pixel centres
    np.testing.assert_allclose(np.asarray(rows[0]["keypoints"]).reshape(17, 3),
                               a.keypoints[0, :17] - np.array([0.5, 0.5, 0.0]))
    drawn = a.draw(image)
    assert drawn.shape == image.shape and (drawn != image).any()


def test_estimator_uses_its_detector_when_no_boxes_are_given(memorised):
    r = _records(memorised)[0]
    calls = []

    def detector(image_rgb):
        calls.append(image_rgb.shape)
        return r.bbox[None], np.array([0.8])

    est = WholeBodyEstimator.from_checkpoint(memorised.ckpt, detector=detector)
    res = est(r.image_path)
    assert len(calls) == 1 and len(res) == 1 and res.person_scores.tolist() == [0.8]


def test_crops_on_the_real_sample_equal_the_validation_crops(real_sample_json, real_sample):
    ann = load_coco_wholebody(real_sample_json, real_sample)
    ds = TopDownDataset(ann.records, (192, 256))
    for i, r in enumerate(ann.records):
        image = read_image(r.image_path)
        crops, meta = person_crops(image, r.bbox[None], (192, 256), bgr=True)
        sample = ds[i]
        np.testing.assert_array_equal(crops[0], sample["image"].permute(1, 2, 0).numpy())
        np.testing.assert_allclose(meta["center"][0], sample["meta"]["center"].numpy())
        np.testing.assert_allclose(meta["size"][0], sample["meta"]["size"].numpy())


def test_write_checkpoint_is_atomic_and_loadable_from_bytes(tmp_path, tiny_config):
    net = build_net(tiny_config)
    path = write_checkpoint(net, tmp_path / "sub" / "x.ckpt", tiny_config)
    assert [p.name for p in path.parent.iterdir()] == ["x.ckpt"]
    obj = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    assert set(obj) == {"state_dict", "wholebody"} and all(k.startswith("net.") for k in obj["state_dict"])
    assert obj["wholebody"]["input_size"] == [96, 128]
