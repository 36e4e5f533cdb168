"""Hydra configs (the top-level ``conf/`` is a link to this folder); found as ``pkg://wholebody.conf``.

Importing this package (Hydra does, to find the configs) registers the ``wholebody.choice`` resolver:
``${wholebody.choice:model}`` is the option chosen for a config group. Hydra's own
``${hydra:runtime.choices.model}`` only resolves inside a job; the default run name uses the choices
and also names a sweep's folder, which the launcher resolves before any job exists.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def _choice(group: str, *, _root_: Any) -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices[group])
    return str(_root_.hydra.runtime.choices[group])  # the launcher: the full config, hydra node included


if not OmegaConf.has_resolver("wholebody.choice"):
    OmegaConf.register_new_resolver("wholebody.choice", _choice)
