"""Files from strangers run no code: a checkpoint's or an ONNX file's stored model config is data.

The payload is the one that passed ``torch.load(weights_only=True)`` and then ran through Hydra's
``instantiate``: a ``net`` node calling ``torch.load`` on an embedded pickle whose ``__reduce__``
writes a marker file. Each entry point that rebuilds a network from a file (the estimator from a
checkpoint or an ONNX file, ``wholebody-predict``, ``wholebody-export``, ``wholebody-eval-ckpt``'s
``train(cfg)`` path) must refuse it in one line naming the key, and the marker must never appear.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from training_utils import run_cli
from wholebody.inference import (
    CheckpointError,
    InferenceError,
    WholeBodyEstimator,
    load_checkpoint,
    load_model_config,
)
from wholebody.models.allowlist import StoredConfigError, build_stored, check_model_config

pytestmark = pytest.mark.usefixtures("one_thread")


class _Touch:
    """Unpickling this creates ``path`` (stands in for any code a pickle can run)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def payload_net(marker: Path) -> dict:
    buf = io.BytesIO()
    torch.save(_Touch(str(marker)), buf)
    return {"_target_": "torch.load", "f": {"_target_": "io.BytesIO", "initial_bytes": buf.getvalue()},
            "weights_only": False}


@pytest.fixture(scope="module")
def good_ckpt(tiny_ckpt):
    return tiny_ckpt[0]


def doctored(good: Path, out: Path, change) -> Path:
    obj = torch.load(good, weights_only=True)
    change(obj["wholebody"]["model_config"])
    torch.save(obj, out)
    return out


def test_the_payload_passes_the_safe_load_and_would_run_through_hydra(tmp_path):
    """The premise: weights_only does not stop it; instantiate runs it (so the allow-list must)."""
    from hydra.utils import instantiate

    marker = tmp_path / "ran"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"wholebody": {"model_config": {"net": payload_net(marker)}}}, ckpt)
    obj = torch.load(ckpt, weights_only=True)  # passes
    instantiate(obj["wholebody"]["model_config"]["net"])
    assert marker.exists()


@pytest.fixture()
def evil_ckpt(tmp_path, good_ckpt):
    marker = tmp_path / "ran"
    return doctored(good_ckpt, tmp_path / "evil.ckpt", lambda mc: mc.update(net=payload_net(marker))), marker


def test_a_doctored_checkpoint_runs_nothing_in_the_estimator(evil_ckpt):
    ckpt, marker = evil_ckpt
    with pytest.raises(CheckpointError) as e:
        WholeBodyEstimator.from_checkpoint(ckpt)
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt) in msg and "model_config.net._target_" in msg and "'torch.load'" in msg
    assert not marker.exists()


def _onnx_with_metadata(path: Path, meta: dict) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, 2, 2])
    y = helper.make_tensor_value_info("out", TensorProto.UINT8, [1, 3, 2, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = "wholebody", json.dumps(meta)
    onnx.save_model(model, str(path))
    return path


def test_a_doctored_onnx_file_runs_nothing(tmp_path, tiny_config):
    marker = tmp_path / "ran"
    net = payload_net(marker)
    net["f"]["initial_bytes"] = list(net["f"]["initial_bytes"])  # JSON has no bytes; Hydra would take a list
    meta = {"model_config": {**tiny_config, "net": net}, "input_size": [96, 128], "refine": "dark",
            "flip_test": False, "outputs": ["out"], "batch_size": 1}
    path = _onnx_with_metadata(tmp_path / "evil.onnx", meta)
    with pytest.raises(InferenceError) as e:
        WholeBodyEstimator.from_onnx(path)
    assert "\n" not in str(e.value) and "model_config.net._target_" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    # the CLI: one error line, exit 2, nothing ran
    img = tmp_path / "in"
    img.mkdir()
    proc = run_cli(["wholebody-predict", f"ckpt={path}", f"input={img}", f"output={tmp_path / 'out'}", "boxes=full"],
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "model_config.net._target_" in proc.stderr, proc.stderr[-1500:]
    assert not marker.exists()


@pytest.mark.parametrize("tool", ["wholebody-predict", "wholebody-export"])
def test_the_commands_refuse_a_doctored_checkpoint(tool, evil_ckpt, tmp_path):
    ckpt, marker = evil_ckpt
    args = [f"ckpt={ckpt}"] + ([f"input={tmp_path}", f"output={tmp_path / 'out'}", "boxes=full"]
                               if tool == "wholebody-predict" else [f"output={tmp_path / 'x.onnx'}"])
    proc = run_cli([tool, *args], cwd=tmp_path, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines and "model_config.net._target_" in lines[-1], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and not marker.exists()
    assert not (tmp_path / "x.onnx").exists()


def test_eval_of_a_doctored_checkpoint_runs_nothing(evil_ckpt, good_ckpt, tmp_path):
    """The wholebody-eval-ckpt path (evaluate(cfg)): net, loss and the training-only nodes."""
    from wholebody.training.evaluate import evaluate
    from wholebody.training.run import compose_config

    ckpt, marker = evil_ckpt
    overrides = [f"ckpt={ckpt}", "data=synthetic", f"data.root={tmp_path / 'set'}", "data.synthetic.images=4",
                 "data.synthetic.val_images=2", "data.num_workers=0", "trainer=cpu", "~callbacks.progress",
                 f"paths.output_dir={tmp_path}"]
    with pytest.raises(CheckpointError, match=r"model_config\.net\._target_"):
        evaluate(compose_config(overrides, config_name="eval", run_dir=tmp_path / "eval"))
    assert not marker.exists()
    evil_loss = doctored(good_ckpt, tmp_path / "loss.ckpt", lambda mc: mc.update(loss=payload_net(marker)))
    overrides[0] = f"ckpt={evil_loss}"
    with pytest.raises(CheckpointError, match=r"model_config\.loss\._target_"):
        evaluate(compose_config(overrides, config_name="eval", run_dir=tmp_path / "eval"))
    assert not marker.exists()
    # a stored optimizer/scheduler (what wholebody-train writes) is never built: the command's own is used;
    # the checkpoint written by write_checkpoint (no optimizer stored) evaluates too
    evil_opt = doctored(good_ckpt, tmp_path / "opt.ckpt",
                        lambda mc: mc.update(optimizer={**payload_net(marker), "_partial_": True},
                                             scheduler=payload_net(marker)))
    for path in (good_ckpt, evil_opt):
        overrides[0] = f"ckpt={path}"
        metrics = evaluate(compose_config(overrides, config_name="eval", run_dir=tmp_path / f"eval-{path.stem}"))
        assert "val/wholebody/AP" in metrics
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda mc: mc["net"].update(_target_="os.system"), "model_config.net._target_"),
        (lambda mc: mc["net"].update(_target_="wholebody.models.allowlist.build_stored"), "model_config.net._target_"),
        (lambda mc: mc["net"].update(roi_margin={"_target_": "builtins.eval", "_args_": ["1"]}),
         "model_config.net.roi_margin._target_"),
        (lambda mc: mc["net"].update(_partial_=True), "model_config.net._partial_"),
        (lambda mc: mc["net"].update(_args_=["x"]), "model_config.net._args_"),
        (lambda mc: mc["net"].update(variant="${oc.decode:'{_target_: os.getcwd}'}"), "model_config.net.variant"),
        (lambda mc: mc["net"].update(no_such_option=1), "model_config.net.no_such_option"),
        (lambda mc: mc["loss"].update(weights={"body": {"_target_": "os.getcwd"}}), "model_config.loss.weights.body._target_"),
        (lambda mc: mc.update(refine={"_target_": "os.getcwd"}), "model_config.refine._target_"),
        (lambda mc: mc.update(input_size="${oc.env:HOME}"), "model_config.input_size"),
    ],
)
def test_stored_configs_are_plain_data_from_an_allow_list(change, key, good_ckpt, tmp_path, tiny_config):
    path = doctored(good_ckpt, tmp_path / "x.ckpt", change)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and msg.split(": ", 1)[1].startswith(key), msg
    mc = json.loads(json.dumps(tiny_config))
    change(mc)
    with pytest.raises(StoredConfigError):
        check_model_config(mc)


def test_what_the_allow_list_keeps_builds_the_same_network(tiny_config):
    stored = {**tiny_config, "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
              "net": {**tiny_config["net"], "init_from": ["/elsewhere/body.ckpt"],
                      "_target_": "wholebody.models.zoomnet.ZoomNet"}}
    checked = check_model_config(stored)
    assert "optimizer" not in checked and "init_from" not in checked["net"]
    assert checked["net"]["_target_"] == "wholebody.models.zoomnet.ZoomNet"
    torch.manual_seed(0)
    a = build_stored(checked["net"])
    torch.manual_seed(0)
    from hydra.utils import instantiate

    b = instantiate({k: v for k, v in tiny_config["net"].items() if k != "init_from"})
    assert type(a) is type(b) and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert type(build_stored(checked["loss"], "loss")).__name__ == "ZoomNetLoss"
    with pytest.raises(StoredConfigError, match="loss._target_"):
        build_stored(checked["net"], "loss")


@pytest.mark.parametrize("name", ["zoomnet", "zoomnet_tiny", "hrnet_wholebody", "hrnet_body", "zoomnet_reuse",
                                  "zoomnet_independent"])
def test_every_packaged_model_config_passes_the_allow_list(name):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        composed = OmegaConf.to_container(compose(f"model/{name}").model, resolve=True)
    GlobalHydra.instance().clear()
    assert load_model_config(name) == composed  # defaults applied as Hydra applies them
    checked = check_model_config(load_model_config(name), need_loss=True)
    assert checked["net"]["_target_"] in ("wholebody.models.zoomnet.ZoomNet", "wholebody.models.baselines.HRNetPose")
