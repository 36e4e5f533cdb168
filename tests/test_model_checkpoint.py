"""Initialisation from checkpoints of earlier training stages (init_from)."""

from __future__ import annotations

import logging

import pytest
import torch

from model_utils import TINY_ZOOMNET
from wholebody.models import HRNetPose, ZoomNet, load_stage_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_ZOOMNET


def tiny(seed: int, **kw) -> ZoomNet:
    torch.manual_seed(seed)
    return ZoomNet(**{**TINY, **kw})


def lightning_ckpt(net: torch.nn.Module, path, keep=lambda k: True) -> None:
    sd = {f"net.{k}": v for k, v in net.state_dict().items() if keep(k)}
    sd["loss._dummy"] = torch.zeros(1)  # other module's state in the same checkpoint
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 10}, path)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_bodynet_stage_then_heads_stage(tmp_path, caplog):
    body_stage, head_stage = tiny(1), tiny(2)
    lightning_ckpt(body_stage, tmp_path / "body.ckpt", keep=lambda k: k.split(".")[0] in ("feature_net", "body_net"))
    torch.save({k: v for k, v in head_stage.state_dict().items() if k.startswith(("face_head", "hand_head"))},
               tmp_path / "heads.pt")
    with caplog.at_level(logging.INFO, logger="wholebody.models.checkpoint"):
        net = tiny(3, init_from=[str(tmp_path / "body.ckpt"), str(tmp_path / "heads.pt")])
    assert same(net.feature_net, body_stage.feature_net) and same(net.body_net, body_stage.body_net)
    assert same(net.face_head, head_stage.face_head) and same(net.hand_head, head_stage.hand_head)
    text = caplog.text
    assert "body.ckpt: loaded feature_net" in text and "kept their initialisation" in text and "face_head" in text


def test_report_lists_missing_and_unexpected(tmp_path):
    src = tiny(1)
    sd = src.state_dict()
    dropped = "body_net.final.out.bias"
    del sd[dropped]
    sd["body_net.extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "p.pt")
    net = tiny(2)
    (report,) = load_stage_checkpoints(net, [tmp_path / "p.pt"])
    assert report.missing == [dropped] and report.unexpected == ["body_net.extra.weight"]
    assert report.untouched == [] and report.loaded["hand_head"] > 0
    assert "missing in the checkpoint (1)" in report.summary()


def test_modules_and_exclude_select_what_is_taken(tmp_path):
    src = tiny(1)
    lightning_ckpt(src, tmp_path / "full.ckpt")
    net = tiny(2, init_from=[{"path": str(tmp_path / "full.ckpt"), "modules": ["feature_net", "body_net"],
                              "exclude": ["body_net.final"]}])
    assert same(net.feature_net, src.feature_net)
    assert torch.equal(net.body_net.stages.transitions[0][0][0].weight, src.body_net.stages.transitions[0][0][0].weight)
    assert not torch.equal(net.body_net.final.out.weight, src.body_net.final.out.weight)
    assert not same(net.face_head, src.face_head)


def test_checkpoints_of_other_models_raise_one_line_errors(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="shares no tensor with ZoomNet") as e:
        tiny(1, init_from=[str(tmp_path / "other.pt")])
    assert "\n" not in str(e.value)
    big = HRNetPose(input_size=(96, 128), parts=["body"], stem_width=16, stem_planes=16, stem_blocks=1,
                    widths=(16, 32, 64, 128), num_modules=1, num_blocks=1)
    torch.save(big.state_dict(), tmp_path / "hrnet.pt")
    with pytest.raises(ValueError, match="shape") as e:  # 17 heatmaps vs 38
        tiny(1, init_from=[str(tmp_path / "hrnet.pt")])
    assert "\n" not in str(e.value) and "body_net.final.out.weight" in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny(1, init_from=[str(tmp_path / "nope.ckpt")])


class _Evil:
    def __reduce__(self):
        return (print, ("code in a checkpoint must not run",))


def test_files_are_read_with_weights_only(tmp_path, capsys):
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "obj": _Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="weights_only=True"):
        tiny(1, init_from=[str(tmp_path / "evil.ckpt")])
    assert "must not run" not in capsys.readouterr().out
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        tiny(1, init_from=[str(tmp_path / "junk.ckpt")])
