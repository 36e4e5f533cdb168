"""WholeBodyDataModule through its Hydra configs: synthetic generation, loaders, detections, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import wholebody

CONF = Path(wholebody.__file__).parent / "conf"
SMALL = ["data.synthetic.images=12", "data.synthetic.val_images=4", "data.synthetic.workers=1", "data.batch_size=4",
         "data.input_size=[96,128]", "data.num_workers=0"]


def _data_cfg(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(overrides=list(overrides)).data


@pytest.fixture(scope="module")
def synth_dm(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm") / "synth"
    dm = instantiate(_data_cfg("+data=synthetic", f"data.root={root}", *SMALL))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_synthetic_config_generates_and_loads(synth_dm):
    dm = synth_dm
    assert dm.val_ann_file == dm.root / "annotations" / "coco_wholebody_val_v1.0.json" and dm.val_ann_file.is_file()
    assert dm.train_records and dm.val_records and dm.input_size == (96, 128)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 128, 96) and batch["image"].dtype == torch.uint8
    assert batch["keypoints"].shape == (4, 133, 3) and batch["part_boxes"].shape == (4, 3, 4)
    assert batch["meta"]["center"].dtype == torch.float64 and batch["meta"]["image_id"].shape == (4,)
    val = list(dm.val_dataloader())
    assert sum(len(b["image"]) for b in val) == len(dm.val_records)  # no drop_last, no augmentation
    b = val[0]
    assert not b["meta"]["flipped"].any() and (b["meta"]["rotation"] == 0).all()
    r = dm.val_records[0]
    assert Path(dm.image_path(r.image_id)).is_file() and dm.image_path(r.image_id) == r.image_path
    assert dm.load_stats["train"].kept == len(dm.train_records)
    # the evaluation callback takes the loaded columns of the validation file instead of reading it again
    assert dm.loaded_columns(dm.val_ann_file) is dm.val_persons.keypoint_source
    assert dm.loaded_columns(dm.root / "other.json") is None


def test_prepare_data_reuses_a_current_set_and_regenerates_a_changed_one(synth_dm, tmp_path):
    dm = synth_dm
    ann = dm.val_ann_file
    before = ann.stat().st_mtime_ns
    dm.prepare_data()
    assert ann.stat().st_mtime_ns == before
    cfg = _data_cfg("+data=synthetic", f"data.root={dm.root}", *SMALL, "data.synthetic.val_images=3")
    other = instantiate(cfg)
    other.prepare_data()
    assert len(json.loads(ann.read_text())["images"]) == 3
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        instantiate(_data_cfg("+data=synthetic", f"data.root={foreign}", *SMALL)).prepare_data()
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_workers_are_seeded_differently(synth_dm):
    dm = instantiate(_data_cfg("+data=coco_wholebody", f"data.root={synth_dm.root}", "data.batch_size=2",
                               "data.input_size=[96,128]", "data.num_workers=2", "data.persistent_workers=false"))
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.worker_init_fn is not None and loader.drop_last
    torch.manual_seed(0)
    batches = [b for _, b in zip(range(4), loader)]
    rotations = torch.cat([b["meta"]["rotation"] for b in batches])
    sizes = torch.cat([b["meta"]["size"][:, 0] for b in batches])
    assert len(set(sizes.tolist())) == len(sizes)  # no two workers replay the same random stream
    assert rotations.dtype == torch.float64


def test_detected_boxes_for_validation(synth_dm, tmp_path):
    gt = json.loads(synth_dm.val_ann_file.read_text())
    dets = [{"image_id": im["id"], "category_id": 1, "bbox": [10.0, 10.0, 80.0, 120.0], "score": s}
            for im in gt["images"] for s in (0.9, 0.1)]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    dm = instantiate(_data_cfg("+data=coco_wholebody", f"data.root={synth_dm.root}", "data.num_workers=0",
                               "data.input_size=[96,128]", f"data.val_boxes={tmp_path / 'dets.json'}",
                               "data.det_score_thr=0.5"))
    dm.setup("validate")
    assert len(dm.val_records) == len(gt["images"]) and all(r.ann_id == -1 for r in dm.val_records)
    b = next(iter(dm.val_dataloader()))
    assert (b["meta"]["ann_id"] == -1).all() and torch.allclose(b["meta"]["score"], torch.tensor(0.9))
    # each person remembers its box's index in the detection file: the 0.9 boxes stand at even indices
    assert b["meta"]["bbox_id"].tolist() == [2 * i for i in range(len(b["meta"]["bbox_id"]))]
    assert dm.val_ann_file.name == "coco_wholebody_val_v1.0.json"  # the evaluator still gets the GT file


def test_validation_has_its_own_workers_not_kept_between_validations(synth_dm):
    from wholebody.data import WholeBodyDataModule

    dm = WholeBodyDataModule(str(synth_dm.root), input_size=(96, 128), batch_size=2, num_workers=2, val_num_workers=1)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert (train.num_workers, train.persistent_workers) == (2, True)
    assert (val.num_workers, val.persistent_workers) == (1, False)
    same = WholeBodyDataModule(str(synth_dm.root), input_size=(96, 128), num_workers=3, val_persistent_workers=True)
    same.setup("validate")
    assert (same.val_dataloader().num_workers, same.val_dataloader().persistent_workers) == (3, True)
    assert _data_cfg("+data=coco_wholebody").val_num_workers is None  # the config's default: as training's


def test_missing_files_give_clear_errors(tmp_path, synth_dm):
    dm = instantiate(_data_cfg("+data=coco_wholebody", f"data.root={tmp_path}", "data.num_workers=0"))
    with pytest.raises(FileNotFoundError, match="annotations/, train2017/, val2017/"):
        dm.setup("fit")


def test_python_construction_defaults():
    from wholebody.data import WholeBodyDataModule

    dm = WholeBodyDataModule("/nowhere", num_workers=0)
    assert dm.input_size == (288, 384) and dm.augment.scale_factor == 0.35 and dm.augment.rotation_factor == 45
    assert np.isclose(dm.augment.flip_prob, 0.5)
    assert str(dm.val_ann_file).endswith("annotations/coco_wholebody_val_v1.0.json")
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()
