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
- a value of any other type, or nesting deeper than :data:`MAX_DEPTH`.

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
