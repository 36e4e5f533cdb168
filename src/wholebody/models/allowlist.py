"""Networks and losses rebuilt from configs read from files: an allow-list, never a factory.

A checkpoint or an exported ONNX model carries the model config it was made with, so that the
network can be rebuilt without the user naming it. Such a file may come from a stranger, so its
config is data, not code: nothing in it may name a callable. :func:`check_model_config` reads the
``net`` and ``loss`` nodes against this module's allow-list (the package's own classes, each named
by its public or its module path) and every other value as a plain value (None, bool, int, float,
str, and lists / string-keyed mappings of them). Refused, each with a one-line
:class:`StoredConfigError` naming the file and the offending key:

- a ``_target_`` that is not on the list, or any ``_target_`` (or other ``_``-prefixed Hydra key such as
  ``_partial_``, ``_args_``) below the top of ``net`` / ``loss``;
- a keyword the class does not take;
- a string holding an interpolation (``${...}``): resolvers such as ``oc.decode`` turn strings into
  nodes, so an interpolation could smuggle a ``_target_`` past the check;
- a value of any other type, or nesting deeper than :data:`MAX_DEPTH`;
- a size out of range (:data:`SIZE_RULES`): crop sizes (``input_size``, at most :data:`MAX_INPUT_SIDE`
  px a side), channel widths (at most :data:`MAX_WIDTH`), stage repeats (at most :data:`MAX_REPEATS`),
  the RoI size (a multiple of 4 up to 256), RoI margins, heatmap upsampling and sigmas that are not
  positive integers / numbers in their range, and a ``net.input_size`` other than the config's own
  ``input_size``. These are checked before any network is built: a stranger's ``roi_size: 0`` or
  ``input_size: [96000, 128000]`` is one line, not a traceback in the first forward pass or an
  allocation of tens of GB.

The training-only nodes a stored config may also hold (``optimizer``, ``scheduler``, written by
``wholebody-train`` with their ``_target_``) are dropped, never built. ``init_from`` and ``pretrained``
(other checkpoints or weights to read) are dropped: the weights come from the file itself.

:func:`build_stored` then calls the allow-listed class directly with the checked keywords; Hydra's
``instantiate`` is not involved.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from wholebody.models.baselines import HRNetPose
from wholebody.models.losses import HeatmapLoss, ZoomNetLoss
from wholebody.models.zoomnet import ZoomNet


def _names(*classes: type) -> dict[str, type]:
    out: dict[str, type] = {}
    for cls in classes:
        out[f"wholebody.models.{cls.__name__}"] = cls
        out[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return out


#: What a stored ``net`` node may name.
NETWORKS: dict[str, type] = _names(ZoomNet, HRNetPose)
#: What a stored ``loss`` node may name.
LOSSES: dict[str, type] = _names(ZoomNetLoss, HeatmapLoss)
#: Top-level model-config nodes that are only ever used for training; dropped from stored configs.
TRAINING_ONLY = ("optimizer", "scheduler")
#: Keywords dropped from a stored ``net`` node (they name other files or weights to read).
DROPPED_NET_KEYS = ("init_from", "pretrained")
MAX_DEPTH = 6
#: Largest crop side (px) a stored config may ask for: 5x the paper's 384 (a batch of 32 such crops
#: already takes 1.6 GB as float32).
MAX_INPUT_SIDE = 2048
#: Most channels of one branch or stem (HRNet-W48's widest branch has 384).
MAX_WIDTH = 1024
#: Most modules or blocks of one stage (HRNet-W32 has 4).
MAX_REPEATS = 32


class StoredConfigError(ValueError):
    """A stored model config that names a callable or holds a value that is not plain data: one line."""


def _hydra_key(key: str) -> StoredConfigError:
    return StoredConfigError(f"{key}: a stored config may not name a callable or Hydra option (only the "
                             "network's and the loss's own _target_ are read, from an allow-list)")


def _plain(value: Any, key: str, depth: int = 0) -> Any:
    """``value`` as plain data (lists for tuples), or :class:`StoredConfigError` naming ``key``."""
    if depth > MAX_DEPTH:
        raise StoredConfigError(f"{key}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoredConfigError(f"{key}: {value!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        if "${" in value:
            raise StoredConfigError(f"{key}: holds an interpolation ({value[:60]!r}); stored configs are resolved values")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoredConfigError(f"{key}: has a non-string key {k!r}")
            if k.startswith("_"):
                raise _hydra_key(f"{key}.{k}")
            out[k] = _plain(v, f"{key}.{k}", depth + 1)
        return out
    raise StoredConfigError(f"{key}: a {type(value).__name__} is not a plain config value")


def _int_in(lo: int, hi: int, multiple: int = 1):
    """Rule: an int (not a bool) in [lo, hi], a multiple of ``multiple``."""
    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or v % multiple:
            return f"must be an integer in [{lo}, {hi}]" + (f", a multiple of {multiple}" if multiple > 1 else "")
        return None
    return rule


def _ints(lo: int, hi: int, min_len: int, max_len: int, scalar: bool = False):
    """Rule: a list of ``min_len``..``max_len`` ints in [lo, hi] (``scalar``: or one such int)."""
    one = _int_in(lo, hi)

    def rule(v: Any) -> str | None:
        if scalar and not isinstance(v, list):
            return one(v)
        if not isinstance(v, list) or not min_len <= len(v) <= max_len or any(one(x) for x in v):
            count = f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"
            return f"must be {'an integer or ' if scalar else ''}a list of {count} integers in [{lo}, {hi}]"
        return None
    return rule


def _number_in(lo: float, hi: float, lo_open: bool = False):
    """Rule: an int or float (not a bool) in [lo, hi] (``lo_open``: (lo, hi])."""
    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v if lo_open else lo <= v) or v > hi:
            return f"must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        return None
    return rule


_INPUT_SIZE = _ints(1, MAX_INPUT_SIDE, 2, 2)
_WIDTH = _int_in(1, MAX_WIDTH)
_REPEATS = _int_in(1, MAX_REPEATS)
_STAGE_WIDTHS = _ints(1, MAX_WIDTH, 2, 4)
_STAGE_REPEATS = _ints(1, MAX_REPEATS, 1, 3, scalar=True)
_UNIT = _number_in(0.0, 1.0)
_SIGMA = _number_in(0.0, 64.0, lo_open=True)

#: Value ranges of the size-bearing keywords of each allow-listed class (``[W, H]`` crop sizes, channel
#: widths, repeats, RoI sizes, heatmap upsampling, sigmas); keywords not listed are checked by the
#: class itself when it is built.
SIZE_RULES: dict[type, dict[str, Any]] = {
    ZoomNet: {
        "input_size": _INPUT_SIZE, "stem_width": _WIDTH, "stem_planes": _WIDTH, "stem_blocks": _REPEATS,
        "body_widths": _STAGE_WIDTHS, "body_modules": _STAGE_REPEATS, "body_blocks": _STAGE_REPEATS,
        "body_upsample": _int_in(1, 4), "head_widths": _STAGE_WIDTHS, "head_modules": _STAGE_REPEATS,
        "head_blocks": _STAGE_REPEATS, "head_layer1_blocks": _REPEATS, "head_layer1_planes": _WIDTH,
        "roi_size": _int_in(4, 256, multiple=4), "roi_margin": _number_in(0.0, 10.0, lo_open=True),
        "min_roi_size": _number_in(0.0, 512.0), "roi_jitter_shift": _UNIT, "roi_jitter_scale": _UNIT,
        "box_center_weight": _number_in(0.0, 1000.0),
    },
    HRNetPose: {
        "input_size": _INPUT_SIZE, "stem_width": _WIDTH, "stem_planes": _WIDTH, "stem_blocks": _REPEATS,
        "widths": _STAGE_WIDTHS, "num_modules": _STAGE_REPEATS, "num_blocks": _STAGE_REPEATS,
        "upsample": _int_in(1, 4), "box_keypoint_threshold": _UNIT,
    },
    ZoomNetLoss: {"body_sigma": _SIGMA, "face_sigma": _SIGMA, "hand_sigma": _SIGMA},
    HeatmapLoss: {"sigma": _SIGMA},
}


def _check_sizes(cls: type, node: Mapping[str, Any], key: str) -> None:
    """:class:`StoredConfigError` naming the first keyword of ``node`` outside its :data:`SIZE_RULES` range."""
    for k, rule in SIZE_RULES.get(cls, {}).items():
        if k in node and node[k] is not None and (why := rule(node[k])) is not None:
            raise StoredConfigError(f"{key}.{k}: {str(node[k])[:60]} {why}")


def _check_node(node: Any, key: str, allowed: Mapping[str, type], drop: tuple[str, ...] = ()) -> dict:
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise StoredConfigError(f"{key}: missing, or without a _target_")
    target = node["_target_"]
    if not isinstance(target, str) or target not in allowed:
        names = sorted({f"wholebody.models.{c.__name__}" for c in allowed.values()})
        raise StoredConfigError(f"{key}._target_: {str(target)[:80]!r} is not one of the package's classes {names}")
    cls = allowed[target]
    params = inspect.signature(cls.__init__).parameters
    out: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
    for k, v in node.items():
        if k == "_target_" or k in drop:
            continue
        if not isinstance(k, str) or k.startswith("_"):
            raise _hydra_key(f"{key}.{k}")
        if k not in params or k == "self" or params[k].kind in (params[k].VAR_POSITIONAL, params[k].VAR_KEYWORD):
            raise StoredConfigError(f"{key}.{k}: {cls.__name__} takes no keyword {k!r}")
        out[k] = _plain(v, f"{key}.{k}", 1)
    _check_sizes(cls, out, key)
    return out


def check_model_config(model_config: Any, *, need_loss: bool = False) -> dict:
    """The checked copy of a model config read from a file (see the module docstring).

    Returns a plain dict: ``net`` (and ``loss`` when present) with an allow-listed ``_target_`` and
    plain keywords the class takes, every other top-level value plain; training-only nodes and
    ``net.init_from`` dropped. Raises :class:`StoredConfigError` (the message names the key; callers
    prefix the file).
    """
    if not isinstance(model_config, Mapping):
        raise StoredConfigError(f"model_config: a {type(model_config).__name__}, not a mapping")
    out: dict[str, Any] = {}
    for k, v in model_config.items():
        if not isinstance(k, str):
            raise StoredConfigError(f"model_config: has a non-string key {k!r}")
        if k in TRAINING_ONLY:
            continue
        if k == "net":
            out[k] = _check_node(v, "model_config.net", NETWORKS, DROPPED_NET_KEYS)
        elif k == "loss":
            out[k] = _check_node(v, "model_config.loss", LOSSES)
        else:
            if k.startswith("_"):
                raise _hydra_key(f"model_config.{k}")
            out[k] = _plain(v, f"model_config.{k}")
    if "net" not in out:
        raise StoredConfigError("model_config.net: missing, or without a _target_")
    if "input_size" in out:
        if (why := _INPUT_SIZE(out["input_size"])) is not None:
            raise StoredConfigError(f"model_config.input_size: {str(out['input_size'])[:60]} {why}")
        net_size = out["net"].get("input_size")
        if net_size is not None and net_size != out["input_size"]:
            raise StoredConfigError(f"model_config.net.input_size: {net_size} differs from the config's input_size "
                                    f"{out['input_size']} (the crops the network is given)")
    if need_loss and "loss" not in out:
        raise StoredConfigError("model_config.loss: missing, or without a _target_")
    return out


def build_stored(node: Mapping[str, Any], kind: str = "net") -> nn.Module:
    """Build a node of a checked config (:func:`check_model_config`) by calling its allow-listed class.

    ``kind``: ``"net"`` or ``"loss"``. The node is checked again here, so an unchecked one cannot slip through.
    """
    allowed = NETWORKS if kind == "net" else LOSSES
    checked = _check_node(node, f"model_config.{kind}", allowed, DROPPED_NET_KEYS if kind == "net" else ())
    cls = allowed[checked.pop("_target_")]
    return cls(**checked)
