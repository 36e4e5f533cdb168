"""ONNX export of the crop model: wholebody-export, parity with PyTorch in ONNX Runtime, the
estimator on ONNX Runtime, static batches, metadata and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from wholebody.data.coco import load_coco_wholebody
from wholebody.data.dataset import TopDownDataset
from wholebody.inference import (
    InferenceError,
    OnnxRunner,
    WholeBodyEstimator,
    compare_with_pytorch,
    export_onnx,
    load_checkpoint,
    load_model_config,
)

HEATMAP_TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def exported(memorised, tmp_path_factory):
    """The memorised checkpoint exported by the wholebody-export command (dynamic batch, default check)."""
    out = tmp_path_factory.mktemp("onnx") / "memorised.onnx"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "wholebody.cli.export", f"ckpt={memorised.ckpt}", f"output={out}"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


@pytest.fixture(scope="module")
def memorised_crops(memorised):
    records = load_coco_wholebody(memorised.ann_file, memorised.image_dir).records
    ds = TopDownDataset(records, (96, 128))
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def test_export_command_writes_a_model_with_its_metadata(exported, memorised):
    path, stdout = exported
    assert "wrote" in stdout and "dynamic batch" in stdout and "ONNX Runtime vs PyTorch" in stdout
    model = onnx.load(str(path))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["wholebody"])
    assert meta["input_size"] == [96, 128] and meta["batch_size"] is None and meta["flip_test"] is False
    assert meta["outputs"][:4] == ["body_heatmaps", "face_heatmaps", "lefthand_heatmaps", "righthand_heatmaps"]
    assert "part_boxes" in meta["outputs"] and meta["model_config"]["net"]["_target_"].endswith("ZoomNet")
    (inp,) = model.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_matches_pytorch(exported, memorised, memorised_crops, batch):
    """The acceptance check: every heatmap within 1e-4 of PyTorch's, on persons the network knows
    (dynamic batch: one file serves both batch sizes)."""
    net, _ = load_checkpoint(memorised.ckpt)
    crops = memorised_crops[:batch] if batch <= len(memorised_crops) else memorised_crops
    diffs = compare_with_pytorch(net, OnnxRunner(exported[0]), crops)
    heat = {k: v for k, v in diffs.items() if "heatmaps" in k}
    assert len(heat) == 7 and max(heat.values()) <= HEATMAP_TOL, diffs
    assert diffs["part_boxes"] < 1e-3 and diffs["body_box_scores"] < 1e-5, diffs


def test_onnx_heatmaps_match_at_the_same_rois_on_an_untrained_network(exported, memorised):
    """On an untrained network's noisy maps the float32 box fit can round differently (RoIs apart
    by ~0.01 px); with the same RoIs the part heatmaps still agree."""
    from wholebody.inference.export import check_crops

    net, _ = load_checkpoint(memorised.ckpt)
    crops = check_crops((96, 128), 4, seed=3)  # other synthetic people: unfamiliar, noisier box maps
    diffs = compare_with_pytorch(net, OnnxRunner(exported[0]), crops)
    assert diffs["body_heatmaps"] <= HEATMAP_TOL
    assert all(v <= HEATMAP_TOL for k, v in diffs.items() if k.endswith("@same_rois")), diffs
    assert diffs["part_boxes"] < 0.1, diffs


def test_estimator_on_onnx_runtime_gives_the_pytorch_poses(exported, memorised):
    records = load_coco_wholebody(memorised.ann_file, memorised.image_dir).records
    pt = WholeBodyEstimator.from_checkpoint(memorised.ckpt)
    ort = WholeBodyEstimator.from_onnx(exported[0], batch_size=2)  # 2 per call: the dynamic batch varies
    assert ort.describe()["backend"] == "onnxruntime" and ort.refine == pt.refine and ort.input_size == pt.input_size
    paths = sorted({r.image_path for r in records})
    boxes = [np.stack([r.bbox for r in records if r.image_path == p]) for p in paths]
    for a, b in zip(pt.estimate_many(paths, boxes), ort.estimate_many(paths, boxes)):
        np.testing.assert_allclose(a.keypoints[..., :2], b.keypoints[..., :2], atol=1e-2)
        np.testing.assert_allclose(a.keypoints[..., 2], b.keypoints[..., 2], atol=1e-4)
    with pytest.raises(InferenceError, match="exported with flip_test=False"):
        WholeBodyEstimator.from_onnx(exported[0], flip_test=True)


def _static_identity_model(path, batch):
    """A hand-made ONNX graph with a static batch: uint8 images -> float 'body_heatmaps' (a cast)."""
    node = helper.make_node("Cast", ["images"], ["body_heatmaps"], to=TensorProto.FLOAT)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, [batch, 3, 4, 2])],
                              [helper.make_tensor_value_info("body_heatmaps", TensorProto.FLOAT, [batch, 3, 4, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    mc = load_model_config("zoomnet_tiny")
    mc["input_size"] = mc["net"]["input_size"] = [2, 4]  # the metadata's sizes agree (checked when read)
    meta = {"batch_size": batch, "flip_test": False, "model_config": mc, "input_size": [2, 4]}
    entry.key, entry.value = "wholebody", json.dumps(meta)
    onnx.save(model, str(path))
    return path


def test_runner_pads_and_splits_batches_for_a_static_model(tmp_path):
    runner = OnnxRunner(_static_identity_model(tmp_path / "static.onnx", 3))
    rng = np.random.default_rng(0)
    for n in (1, 3, 7):
        x = rng.integers(0, 256, (n, 3, 4, 2), dtype=np.uint8)
        out = runner(torch.from_numpy(x))["body_heatmaps"]
        assert out.shape == (n, 3, 4, 2)
        np.testing.assert_array_equal(out.numpy(), x.astype(np.float32))


def test_export_refuses_to_overwrite_and_bad_models_are_named(exported, memorised, tmp_path):
    net, info = load_checkpoint(memorised.ckpt)
    with pytest.raises(InferenceError, match="overwrite=true"):
        export_onnx(net, info, exported[0])
    plain = tmp_path / "plain.onnx"
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(plain))
    with pytest.raises(InferenceError, match="not exported by wholebody-export"):
        OnnxRunner(plain)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InferenceError, match="not a loadable ONNX model"):
        OnnxRunner(junk)
    with pytest.raises(FileNotFoundError):
        OnnxRunner(tmp_path / "missing.onnx")


@pytest.mark.slow
def test_static_batch_export_with_flip_test_matches_pytorch(memorised, memorised_crops, tmp_path):
    net, info = load_checkpoint(memorised.ckpt)
    report = export_onnx(net, info, tmp_path / "flip_b4.onnx", batch_size=4, flip_test=True)
    runner = OnnxRunner(report.path)
    model = onnx.load(str(report.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    diffs = compare_with_pytorch(net, runner, memorised_crops)  # 5 crops: padded to 8, cut back
    assert max(v for k, v in diffs.items() if "heatmaps" in k) <= HEATMAP_TOL, diffs
    ort = WholeBodyEstimator.from_onnx(report.path)
    pt = WholeBodyEstimator.from_checkpoint(memorised.ckpt, flip_test=True)
    records = load_coco_wholebody(memorised.ann_file, memorised.image_dir).records
    for r in records[:2]:
        np.testing.assert_allclose(ort(r.image_path, r.bbox).keypoints[..., :2], pt(r.image_path, r.bbox).keypoints[..., :2],
                                   atol=1e-2)


@pytest.mark.slow
def test_a_one_stage_hrnet_exports_and_runs_through_the_estimator(tmp_path):
    from wholebody.inference import build_net, write_checkpoint
    from wholebody.inference.export import check_crops

    mc = {"input_size": [96, 128], "refine": "quarter", "flip_test": False,
          "net": {"_target_": "wholebody.models.HRNetPose", "input_size": [96, 128], "stem_width": 16, "stem_planes": 16,
                  "stem_blocks": 1, "widths": [16, 32, 64, 128], "num_modules": [1, 1, 1], "num_blocks": 1}}
    torch.manual_seed(0)
    ckpt = write_checkpoint(build_net(mc), tmp_path / "hrnet.ckpt", mc)
    net, info = load_checkpoint(ckpt)
    report = export_onnx(net, info, tmp_path / "hrnet.onnx")
    assert report.outputs == ["heatmaps"]
    assert compare_with_pytorch(net, OnnxRunner(report.path), check_crops((96, 128), 3))["heatmaps"] <= HEATMAP_TOL
    image = np.full((200, 150, 3), 128, np.uint8)
    a = WholeBodyEstimator.from_onnx(report.path)(image, "full")
    b = WholeBodyEstimator.from_checkpoint(ckpt)(image, "full")
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    flip = export_onnx(net, info, tmp_path / "flip.onnx", flip_test=True)  # the mirrored pass in the graph
    a = WholeBodyEstimator.from_onnx(flip.path)(image, "full")
    b = WholeBodyEstimator.from_checkpoint(ckpt, flip_test=True)(image, "full")
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
