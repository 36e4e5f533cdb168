"""Checkpoints for inference: read a training checkpoint back into a network, or write one.

A checkpoint of this package is what :class:`~wholebody.training.module.PoseModule` saves: a dict
with ``state_dict`` (the network's tensors under ``net.``) and ``wholebody``::

    {"model_config": {"input_size": [W, H], "refine": ..., "flip_test": ..., "net": {"_target_": ...}, ...},
     "input_size": [W, H], "refine": "dark", "flip_test": False, "net_class": "wholebody.models.zoomnet.ZoomNet"}

:func:`load_checkpoint` checks the CRC of every member of the file's zip archive
(:func:`wholebody.models.checkpoint.checkpoint_problem`: a flipped bit is refused, not loaded), reads it
with ``torch.load(..., weights_only=True)`` (no pickled code runs), rebuilds the network from ``model_config["net"]`` through the allow-list of
:mod:`wholebody.models.allowlist` (the stored config is data: it can name only the package's own
network classes, never another callable; ``init_from`` dropped: the weights come from the file
itself) and loads the weights strictly. Every problem is one :class:`CheckpointError` line naming the file.
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
    """A packaged model config (``wholebody/conf/model/<name>.yaml``, its ``defaults`` within the model
    group applied as Hydra would) as a resolved plain dict."""
    from omegaconf import OmegaConf

    group = resources.files("wholebody.conf").joinpath("model")

    def node(n: str, seen: tuple[str, ...]) -> Any:
        ref = group.joinpath(f"{n}.yaml")
        if not ref.is_file():
            names = sorted(p.name.removesuffix(".yaml") for p in group.iterdir() if p.name.endswith(".yaml"))
            raise InferenceError(f"no model config {n!r}; packaged ones: {names}")
        if n in seen:
            raise InferenceError(f"model config {n!r}: its defaults list includes itself")
        cfg = OmegaConf.create(ref.read_text())
        defaults = list(cfg.pop("defaults", None) or ["_self_"])
        if "_self_" not in defaults:
            defaults.append("_self_")
        merged = OmegaConf.create()
        for entry in defaults:
            if not isinstance(entry, str):
                raise InferenceError(f"model config {n!r}: only names of the model group in its defaults, got {entry!r}")
            merged = OmegaConf.merge(merged, cfg if entry == "_self_" else node(entry, (*seen, n)))
        return merged

    return OmegaConf.to_container(node(name, ()), resolve=True)


def build_net(model_config: Mapping[str, Any]) -> nn.Module:
    """The network of a model config read from a file, in eval mode.

    The config is data: its ``net`` node is checked against the allow-list of
    :mod:`wholebody.models.allowlist` (the package's own network classes, plain keyword values,
    no nested ``_target_``, ``init_from`` dropped) and the class is called directly; nothing in the
    config can name another callable. Raises :class:`CheckpointError` in one line naming the key.
    """
    from wholebody.models.allowlist import StoredConfigError, build_stored, check_model_config

    try:
        checked = check_model_config(model_config)
    except StoredConfigError as e:
        raise CheckpointError(str(e)) from None
    target = checked["net"]["_target_"]
    try:
        net = build_stored(checked["net"], "net")
    except StoredConfigError as e:
        raise CheckpointError(str(e)) from None
    except Exception as e:  # the constructor's own complaint about a value, in one line
        raise CheckpointError(f"cannot build {target}: {_first_line(e)}") from None
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
    from wholebody.models.checkpoint import checkpoint_problem

    problem = checkpoint_problem(p)  # torch.load does not check the archive's CRCs: a flipped bit would load
    if problem is not None:
        raise CheckpointError(f"{p}: not a readable checkpoint ({problem}): a damaged file")
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
    mc = checked_model_config(mc, p)
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{p}: no state_dict")
    tensors = {k[len(NET_PREFIX):]: v for k, v in sd.items() if k.startswith(NET_PREFIX) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{p}: its state_dict holds no network tensors (no '{NET_PREFIX}' keys)")
    bad = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:  # a damaged file (a flipped bit) that still unpickles
        raise CheckpointError(f"{p}: tensor {bad} holds NaN or infinite values: a damaged checkpoint")
    return tensors, checkpoint_info(p, entry, mc)


def checked_model_config(model_config: Any, source: str | Path) -> dict:
    """A model config read from ``source`` (a checkpoint, an ONNX file's metadata), checked against the
    allow-list (:func:`wholebody.models.allowlist.check_model_config`); a refusal is a
    :class:`CheckpointError` naming the file and the key."""
    from wholebody.models.allowlist import StoredConfigError, check_model_config

    try:
        return check_model_config(model_config)
    except StoredConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None


def checkpoint_info(source: str | Path, entry: Mapping[str, Any], model_config: Mapping[str, Any]) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a ``wholebody`` entry (checkpoint or ONNX metadata) whose model
    config has been checked; malformed plain values are a :class:`CheckpointError` naming ``source``."""
    from wholebody.models.allowlist import MAX_INPUT_SIDE

    mc = dict(model_config)
    try:
        size = entry.get("input_size") or mc.get("input_size") or mc["net"].get("input_size")
        if not isinstance(size, (list, tuple)) or len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                                         for v in size):
            raise ValueError(f"input_size {str(size)[:60]} is not [W, H] in whole pixels")
        w, h = int(size[0]), int(size[1])
        if not (0 < w <= MAX_INPUT_SIDE and 0 < h <= MAX_INPUT_SIDE):
            raise ValueError(f"input_size {list(size)} is not within 1..{MAX_INPUT_SIDE} px a side")
        for where, other in (("model_config.input_size", mc.get("input_size")),
                             ("model_config.net.input_size", mc["net"].get("input_size"))):
            if other is not None and list(other) != [w, h]:
                raise ValueError(f"input_size {[w, h]} differs from {where} {list(other)}")
        refine = str(entry.get("refine") or mc.get("refine") or "quarter")
        flip = entry.get("flip_test", mc.get("flip_test", False))
        if not isinstance(flip, bool):
            raise ValueError(f"flip_test {flip!r} is not true/false")
    except (TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{source}: malformed '{CKPT_KEY}' entry ({_first_line(e)})") from None
    return CheckpointInfo(path=str(source), model_config=mc, input_size=(w, h), refine=refine, flip_test=flip,
                          net_class=str(mc["net"]["_target_"]))


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
    load_weights_strict(net, tensors, info.path)
    return net.eval(), info


def load_weights_strict(net: nn.Module, tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load a checkpoint's network tensors (as :func:`read_checkpoint` gives them) into ``net``; names or
    shapes that do not fit are one :class:`CheckpointError` line naming ``source``."""
    from wholebody.models.checkpoint import state_dict_mismatch

    missing, unexpected, bad = state_dict_mismatch(net.state_dict(), tensors)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit {type(net).__name__} ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}): a checkpoint of another model?"
        )
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensor shape(s) differ from {type(net).__name__}'s, e.g. {bad[0]}")
    net.load_state_dict(tensors, strict=True)
