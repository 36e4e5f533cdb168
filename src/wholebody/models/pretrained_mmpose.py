"""mmpose's published top-down HRNet heatmap checkpoints for COCO-WholeBody, as package checkpoints.

mmpose publishes HRNet-W32 / W48 models trained on COCO-WholeBody (256x192 and 384x288 crops, with
and without DARK decoding). Their files hold ``state_dict`` with ``backbone.*`` (HRNet, the module
names of the HRNet authors' code, which timm and this package share: :mod:`wholebody.models.pretrained`)
and the 1x1 heatmap layer under ``head.final_layer.*`` (mmpose 1.x) or
``keypoint_head.final_layer.*`` (0.x), next to ``meta``. The network is the package's one-stage
:class:`~wholebody.models.baselines.HRNetPose` (stem + layer1, stages 2-4 fused into the
highest-resolution branch, 133 heatmaps at 1/4) with what those models were trained with:

* input: RGB crops normalised with the ImageNet mean / std in 0..255 (123.675, 116.28, 103.53 /
  58.395, 57.12, 57.375), exactly the package's :class:`~wholebody.models.backbone.ImageNormalizer`;
  person boxes enlarged 1.25x to the crop aspect (the package's ``data.padding``);
* heatmaps: stride 4 on mmpose's grid (heatmap px ``j`` at the centre of crop px ``4j``:
  ``heatmap_grid="mmpose"``), decoded with the quarter-pixel offset, or DARK for the ``*_dark``
  models; flip test on.

``wholebody-convert mmpose FILE.pth OUT.ckpt`` (:mod:`wholebody.cli.convert`) reads such a file
(``weights_only=True``), checks with :func:`place_all` that every one of its tensors has its place,
and writes a checkpoint of the model config ``hrnet_wholebody_mmpose`` that ``wholebody-predict``,
``wholebody-eval-ckpt`` and ``wholebody-export`` read like any other.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from wholebody.models.pretrained import (
    HRNET_MARK,
    MMPOSE_HEADS,
    PretrainedError,
    PretrainedReport,
    name_prefixes,
    place_tensors,
    read_source,
)

log = logging.getLogger(__name__)

#: The packaged model config of mmpose's whole-body HRNet models.
MODEL_CONFIG = "hrnet_wholebody_mmpose"
#: The widths of HRNet's published models (W18 ... W64): a file's width outside them is refused before a
#: network of that width is built.
HRNET_WIDTHS = (18, 30, 32, 40, 44, 48, 64)
_SIZE = re.compile(r"(?<!\d)(\d{3})x(\d{3})(?!\d)")


def input_size_from_name(name: str) -> tuple[int, int] | None:
    """(W, H) from an mmpose file name's ``HxW`` (``..._256x192-...pth`` -> (192, 256)), or None."""
    m = _SIZE.search(Path(name).name)
    return (int(m[2]), int(m[1])) if m else None


def mmpose_layout(sd: dict[str, torch.Tensor], source: str) -> tuple[str, str]:
    """(layout, head prefix) of a state dict whose ``backbone.`` prefix :func:`read_source` stripped;
    :class:`PretrainedError` for a file that is not an mmpose top-down heatmap model."""
    heads = [h for h in MMPOSE_HEADS if f"{h}.weight" in sd]
    if not heads or HRNET_MARK not in sd:
        raise PretrainedError(f"{source}: not an mmpose top-down HRNet heatmap checkpoint (needs backbone.* and "
                              f"{' or '.join(h + '.weight' for h in MMPOSE_HEADS)}; names start with "
                              f"{name_prefixes(sd)})")
    return ("mmpose 1.x" if heads[0] == MMPOSE_HEADS[0] else "mmpose 0.x"), heads[0]


def mmpose_model_config(base: dict, width: int, num_outputs: int, input_size: Sequence[int], refine: str,
                        flip_test: bool = True) -> dict:
    """The model config of a file: ``base`` (the packaged ``hrnet_wholebody_mmpose``, a plain dict) with
    HRNet-``width``, the file's heatmap channels (133; 17: body only), crop size (W, H) and decoding."""
    if num_outputs not in (133, 17):
        raise PretrainedError(f"the heatmap layer has {num_outputs} channels; COCO-WholeBody models have 133 (COCO body: 17)")
    mc = copy.deepcopy(base)
    mc["input_size"] = [int(input_size[0]), int(input_size[1])]
    mc["refine"] = refine
    mc["flip_test"] = bool(flip_test)
    net = mc["net"]
    net["input_size"] = list(mc["input_size"])
    net["widths"] = [width, 2 * width, 4 * width, 8 * width]
    if num_outputs == 17:
        net["parts"] = ["body"]
    if "loss" in mc:
        mc["loss"]["parts"] = list(net["parts"])
        if tuple(mc["input_size"]) == (288, 384):  # mmpose's target sigma at 96x72 heatmaps
            mc["loss"]["sigma"] = 3.0
    return mc


def prepare_conversion(source: str, input_size: Sequence[int] | None = None, refine: str | None = None
                       ) -> tuple[dict[str, torch.Tensor], str, int, int, tuple[int, int], str]:
    """Read an mmpose file: (tensors, layout, HRNet width, heatmap channels, crop (W, H), refine).

    ``input_size`` defaults to the file name's ``HxW`` (``256x192``), ``refine`` to ``dark`` when the
    file name says so, else ``quarter``. :class:`PretrainedError` (one line naming the file) otherwise."""
    sd = read_source(source)
    layout, head = mmpose_layout(sd, source)
    if input_size is None:
        input_size = input_size_from_name(source)
        if input_size is None:
            raise PretrainedError(f"{source}: no HxW crop size in the file name (e.g. 256x192); give it (--input-size 192x256)")
    refine = refine or ("dark" if "dark" in Path(source).name.lower() else "quarter")
    mark, final = sd[HRNET_MARK], sd[f"{head}.weight"]
    if mark.dim() != 4 or final.dim() != 4:  # (the network is built from their sizes before any tensor is placed)
        raise PretrainedError(f"{source}: backbone.{HRNET_MARK} {tuple(mark.shape)} and {head}.weight {tuple(final.shape)} "
                              "must be convolution weights (4 dimensions)")
    width = int(mark.shape[0])
    if width not in HRNET_WIDTHS:
        raise PretrainedError(f"{source}: backbone.{HRNET_MARK} says HRNet-W{width}; HRNet widths are {list(HRNET_WIDTHS)}")
    return sd, layout, width, int(final.shape[0]), (int(input_size[0]), int(input_size[1])), refine


def place_all(net: nn.Module, source: str, sd: dict[str, torch.Tensor]) -> PretrainedReport:
    """Map the tensors ``sd`` of the file ``source`` (from :func:`prepare_conversion`) into an
    :class:`~wholebody.models.baselines.HRNetPose` and check that every tensor of the file found its place
    and every tensor of the network came from the file (BN batch counters aside); :class:`PretrainedError`
    naming the file otherwise."""
    report = place_tensors(net, net.pretrained_plan()["body"], sd, source, rows=getattr(net, "_indices", None))
    log.info("%s", report.summary())
    unused = report.unused.get(source, [])
    if unused:
        raise PretrainedError(f"{source}: {len(unused)} of its tensors have no place in {type(net).__name__} "
                              f"({unused[:3]}): not the one-stage top-down HRNet this converter reads")
    kept = [f"{m.module}.{k}" for m in report.modules for k in m.kept if not k.endswith("num_batches_tracked")]
    if kept:
        raise PretrainedError(f"{source}: the file lacks {len(kept)} of the network's tensors ({kept[:3]})")
    return report
