"""Checkpoints for inference: read a training checkpoint back into a network, or write one.

A checkpoint of this package is what :class:`~wholebody.training.module.PoseModule` saves: a dict
with ``state_dict`` (the network's tensors under ``net.``) and ``wholebody``::

    {"model_config": {"input_size": [W, H], "refine": ..., "flip_test": ..., "net": {"_target_": ...}, ...},
     "input_size": [W, H], "refine": "dark", "flip_test": False, "net_class": "wholebody.models.zoomnet.ZoomNet"}

:func:`load_checkpoint` rebuilds the network from ``model_config["net"]`` with Hydra's ``instantiate``
(``init_from`` dropped: the weights come from the checkpoint itself), reads the file with
``torch.load(..., weights_only=True)`` (no code in a checkpoint is ever run) and loads the weights
strictly. Every problem is one :class:`CheckpointError` line naming the file.
:func:`write_checkpoint` writes the same format without a training run (tests, notebooks, tools).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wholebody.io_utils import write_bytes_atomic

#: Key of the package's entry in a checkpoint dict.
CKPT_KEY = "wholebody"
NET_PREFIX = "net."


class InferenceError(ValueError):
    """An expected problem with inference inputs (checkpoint, input files, options): one line."""


class CheckpointError(InferenceError):
    """A checkpoint that cannot be used: unreadable, corrupted, or of another model."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its network."""

    path: str
    model_config: dict
    input_size: tuple[int, int]
    refine: str
    flip_test: bool
    net_class: str


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_model_config(name: str = "zoomnet_tiny") -> dict:
    """A packaged model config (``wholebody/conf/model/<name>.yaml``) as a resolved plain dict."""
    from omegaconf import OmegaConf

    ref = resources.files("wholebody.conf").joinpath("model", f"{name}.yaml")
    if not ref.is_file():
        names = sorted(p.name.removesuffix(".yaml") for p in resources.files("wholebody.conf").joinpath("model").iterdir()
                       if p.name.endswith(".yaml"))
        raise InferenceError(f"no model config {name!r}; packaged ones: {names}")
    cfg = OmegaConf.create(ref.read_text())
    return OmegaConf.to_container(cfg, resolve=True)


def build_net(model_config: Mapping[str, Any]) -> nn.Module:
    """The network of a model config (its ``net`` node, built with Hydra; ``init_from`` ignored), in eval mode."""
    from hydra.utils import instantiate

    net_cfg = model_config.get("net") if isinstance(model_config, Mapping) else None
    if not isinstance(net_cfg, Mapping) or "_target_" not in net_cfg:
        raise CheckpointError("the model config has no 'net' node with a _target_")
    net_cfg = copy.deepcopy(dict(net_cfg))
    net_cfg.pop("init_from", None)
    try:
        net = instantiate(net_cfg, _convert_="all")
    except Exception as e:  # Hydra wraps the constructor's error; report its cause in one line
        cause = e.__cause__ or e
        raise CheckpointError(f"cannot build {net_cfg['_target_']}: {_first_line(cause)}") from None
    return net.eval()


def checkpoint_entry(net: nn.Module, model_config: Mapping[str, Any]) -> dict:
    """The ``wholebody`` entry of a checkpoint for ``net`` built from ``model_config``."""
    mc = copy.deepcopy(dict(model_config))
    input_size = list(mc.get("input_size") or getattr(net, "input_size", (288, 384)))
    return {
        "model_config": mc,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "refine": mc.get("refine", "quarter"),
        "flip_test": bool(mc.get("flip_test", False)),
        "net_class": f"{type(net).__module__}.{type(net).__qualname__}",
    }


def write_checkpoint(net: nn.Module, path: str | Path, model_config: Mapping[str, Any]) -> Path:
    """Write ``net`` as a checkpoint in the training format (``state_dict`` under ``net.`` + the
    ``wholebody`` entry), atomically. ``model_config`` must hold the ``net`` node that built it."""
    state = {NET_PREFIX + k: v.detach().cpu() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"state_dict": state, CKPT_KEY: checkpoint_entry(net, model_config)}, buf)
    return write_bytes_atomic(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The network tensors (``net.`` prefix stripped) and the :class:`CheckpointInfo` of a checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist" if not p.exists() else f"checkpoint {p} is not a file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle, EOF, allow-list errors: all mean "not a usable checkpoint"
        raise CheckpointError(f"{p}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a checkpoint dict")
    entry = obj.get(CKPT_KEY)
    if not isinstance(entry, Mapping):
        what = "a Lightning checkpoint" if "state_dict" in obj else "a state dict or other file"
        raise CheckpointError(f"{p}: {what} without a '{CKPT_KEY}' entry: not a checkpoint of wholebody-train "
                              "(train with wholebody-train, or write one with wholebody.inference.write_checkpoint)")
    mc = entry.get("model_config")
    if not isinstance(mc, Mapping) or not isinstance(mc.get("net"), Mapping):
        raise CheckpointError(f"{p}: its '{CKPT_KEY}' entry has no model_config with a 'net' node")
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{p}: no state_dict")
    tensors = {k[len(NET_PREFIX):]: v for k, v in sd.items() if k.startswith(NET_PREFIX) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{p}: its state_dict holds no network tensors (no '{NET_PREFIX}' keys)")
    size = entry.get("input_size") or mc.get("input_size")
    info = CheckpointInfo(
        path=str(p),
        model_config=dict(mc),
        input_size=(int(size[0]), int(size[1])),
        refine=str(entry.get("refine") or mc.get("refine") or "quarter"),
        flip_test=bool(entry.get("flip_test", mc.get("flip_test", False))),
        net_class=str(entry.get("net_class") or mc["net"].get("_target_")),
    )
    return tensors, info


def load_checkpoint(path: str | Path) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the network of a checkpoint and load its weights (strict); returns (net in eval mode, info).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable/corrupted file, no ``wholebody`` entry, or weights that do not fit
            the network its config describes (names or shapes), in one line naming the file.
    """
    tensors, info = read_checkpoint(path)
    try:
        net = build_net(info.model_config)
    except CheckpointError as e:
        raise CheckpointError(f"{info.path}: {e}") from None
    own = net.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{info.path}: weights do not fit {type(net).__name__} ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}): a checkpoint of another model?"
        )
    bad = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in own if tensors[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{info.path}: {len(bad)} tensor shape(s) differ from {type(net).__name__}'s, e.g. {bad[0]}")
    net.load_state_dict(tensors, strict=True)
    return net.eval(), info
