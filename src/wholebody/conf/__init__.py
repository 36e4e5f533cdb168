"""Hydra configs (the top-level ``conf/`` is a link to this folder); found as ``pkg://wholebody.conf``.

Importing this package (Hydra does, to find the configs) registers the ``wholebody.choice`` resolver:
``${wholebody.choice:model}`` is the option chosen for a config group. Hydra's own
``${hydra:runtime.choices.model}`` only resolves inside a job; the default run name uses the choices
and also names a sweep's folder, which the launcher resolves before any job exists.

It also registers ``wholebody.run_dir``: ``${wholebody.run_dir:<base>,${ckpt_path}}`` is a new
timestamped folder under ``<base>``, or with ``ckpt_path=last`` the newest earlier one (see
:mod:`wholebody.conf.folders`). Its value is cached in the config (``use_cache``), and Hydra copies that
cache into every sweep job's config, so all jobs of a sweep share one folder, local or remote.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def _choice(group: str, *, _root_: Any) -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices[group])
    return str(_root_.hydra.runtime.choices[group])  # the launcher: the full config, hydra node included


def _run_dir(base: str, ckpt_path: str | None = None) -> str:
    from wholebody.conf.folders import run_folder

    return run_folder(base, None if ckpt_path is None else str(ckpt_path))


def _checked_sweep_dir(folder: str, *, _root_: Any) -> str:
    """``folder`` (from ``wholebody.run_dir``); in the launcher, where Hydra resolves the sweep folder
    before any job (and before it rewrites ``multirun.yaml``), a resumed sweep's overrides are checked
    against those the folder's sweep ran with. Jobs (HydraConfig set) only read the folder.

    A mismatch ends the command with one ``error:`` line and status 2, like every expected error of the
    CLI (raised here, Hydra would print it as a traceback: the launcher runs outside ``main``)."""
    import sys

    from hydra.core.hydra_config import HydraConfig

    from wholebody.conf.folders import ResumeError, check_same_sweep

    hydra = _root_.get("hydra")
    if not HydraConfig.initialized() and hydra is not None and str(_root_.get("ckpt_path")) == "last":
        try:
            check_same_sweep(folder, [str(o) for o in hydra.overrides.task])
        except ResumeError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return folder


if not OmegaConf.has_resolver("wholebody.choice"):
    OmegaConf.register_new_resolver("wholebody.choice", _choice)
if not OmegaConf.has_resolver("wholebody.run_dir"):
    OmegaConf.register_new_resolver("wholebody.run_dir", _run_dir, use_cache=True)
if not OmegaConf.has_resolver("wholebody.checked_sweep_dir"):
    OmegaConf.register_new_resolver("wholebody.checked_sweep_dir", _checked_sweep_dir)
