"""Building the experiment loggers from config, with wandb that never prompts and never blocks."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wholebody.conf.folders import ResumeError, is_stamp, recorded_overrides

log = logging.getLogger(__name__)

WANDB_TARGET = "lightning.pytorch.loggers.WandbLogger"


def wandb_has_credentials() -> bool:
    """True when a W&B API key is configured (environment or ~/.netrc); never asks for one."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.exists() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


#: Seconds the start-up check waits for the W&B server before logging offline.
WANDB_REACH_TIMEOUT_S = 3.0


def wandb_server_reachable(timeout: float = WANDB_REACH_TIMEOUT_S) -> tuple[bool, str]:
    """(whether a TCP connection to the W&B server of ``WANDB_BASE_URL`` opens within ``timeout`` s, the
    server ``host:port``). wandb's own start-up waits ``WANDB_INIT_TIMEOUT`` (minutes) on a machine
    with credentials but no network; this check takes at most ``timeout``."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host = url.hostname or "api.wandb.ai"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port}"
    except OSError:
        return False, f"{host}:{port}"


def _prepare_wandb(node: DictConfig) -> DictConfig:
    node = node.copy()
    mode = os.environ.get("WANDB_MODE", "").lower()
    offline_env = mode in ("offline", "dryrun", "disabled")
    if offline_env or not wandb_has_credentials():
        if not node.get("offline", False) and not offline_env:
            log.info("wandb: no credentials found (WANDB_API_KEY or ~/.netrc); logging offline. "
                     "Upload later with `wandb sync <run_dir>/wandb/offline-run-*`.")
        node.offline = True
        os.environ.setdefault("WANDB_MODE", "offline")
    elif not node.get("offline", False):
        reachable, server = wandb_server_reachable()
        if not reachable:
            log.warning("wandb: credentials found but the server %s is not reachable within %.0f s; logging "
                        "offline. Upload later with `wandb sync <run_dir>/wandb/offline-run-*`.",
                        server, WANDB_REACH_TIMEOUT_S)
            node.offline = True
            os.environ["WANDB_MODE"] = "offline"
    # never wait on a terminal prompt or a slow server
    os.environ.setdefault("WANDB_CONSOLE", "off")
    os.environ.setdefault("WANDB_INIT_TIMEOUT", "60")
    os.environ["WANDB_DISABLE_CODE"] = os.environ.get("WANDB_DISABLE_CODE", "true")
    Path(node.save_dir).mkdir(parents=True, exist_ok=True)
    return node


#: Overrides that say where a job runs, not what it is: left out of a sweep job's run name.
_PLACE_KEYS = ("paths.", "hydra.", "logger", "data.root", "name", "+experiment", "experiment")


def swept_keys(sweep_params: Mapping[str, Any] | None, command_overrides: list[str] | None) -> set[str]:
    """The keys a sweep varies: those of ``hydra.sweeper.params`` (Optuna's search space, or the basic
    sweeper's) and the command-line overrides written in sweep syntax (``lr=1e-3,5e-4``, ``range(..)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = {str(k) for k in (sweep_params or {})}
    if command_overrides:
        try:
            parsed = OverridesParser.create().parse_overrides(list(command_overrides))
        except Exception:  # noqa: BLE001  (an unparsable record: name the run by all its overrides)
            return keys
        keys |= {o.key_or_group for o in parsed if o.is_sweep_override()}
    return keys


def sweep_job_name(base: str, overrides: list[str], keys: set[str] | None = None) -> str:
    """A sweep job's run name: ``base`` and its overrides of the swept ``keys`` (all but the ones
    saying where it runs when ``keys`` is empty), keys shortened to their last part where that stays
    unambiguous (``zoomnet lr=0.0005 seed=2`` for ``model.optimizer.lr=0.0005 seed=2``)."""
    pairs = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
    pairs = [(k, v) for k, v in pairs if (k in keys if keys else not k.startswith(_PLACE_KEYS))]
    last = [k.rsplit(".", 1)[-1] for k, _ in pairs]
    short = [f"{s if last.count(s) == 1 else k}={v}" for (k, v), s in zip(pairs, last)]
    return " ".join([base, *short])


def _sweep_identity(node: DictConfig, run_name: str | None, run_dir: str | None) -> DictConfig:
    """In a sweep (Hydra multirun), give each job's wandb run its own name from its overrides, group the
    jobs by the sweep folder (``<name>/<timestamp>``, the job folder's parent) and tag them with the experiment; names and groups
    set by hand are kept."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return node
    hc = HydraConfig.get()
    node = node.copy()
    base = run_name or str(node.get("name") or "run")
    if node.get("name") in (None, run_name):
        record = Path(run_dir).parent / "multirun.yaml" if run_dir else None  # the sweep's command line
        command = None
        if record is not None and record.is_file():
            try:  # Hydra wrote it when this sweep started; a doctored one names the run from the job alone
                command = recorded_overrides(record, "hydra.overrides.task")
            except ResumeError as e:
                log.warning("%s; the run is named from this job's overrides only", e)
        params = hc.sweeper.get("params") if hc.get("sweeper") is not None else None
        node.name = sweep_job_name(base, list(hc.overrides.task), swept_keys(params, command))
    if node.get("group") in (None, run_name) and run_dir:
        sweep = Path(run_dir).parent  # outputs/multirun/<name>/<timestamp>
        node.group = f"{sweep.parent.name}/{sweep.name}" if is_stamp(sweep.name) else sweep.name
    experiment = hc.runtime.choices.get("experiment")
    if experiment and experiment not in (node.get("tags") or []):
        node.tags = [*(node.get("tags") or []), str(experiment)]
    return node


def code_version() -> dict[str, Any]:
    """What ran: the package's version, its git commit and whether the checkout had uncommitted changes
    (None when the package is not run from a git checkout, e.g. installed from a wheel), and the
    versions of torch and Lightning. Logged with the config, so a dashboard run names its code."""
    import subprocess

    import lightning
    import torch

    import wholebody

    here = Path(wholebody.__file__).resolve().parent
    commit = dirty = None
    try:
        git = ["git", "-C", str(here)]
        out = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=10)
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"wholebody": wholebody.__version__, "git_commit": commit, "git_dirty": dirty,
            "torch": torch.__version__, "lightning": lightning.__version__}


def build_loggers(cfg: Mapping[str, Any] | DictConfig | None, run_name: str | None = None,
                  run_dir: str | None = None) -> list[Any]:
    """Instantiate every logger node of ``cfg.logger`` (a mapping name -> node with ``_target_``).
    ``run_name`` / ``run_dir``: the config's ``name`` and run folder (in a sweep each wandb run gets its
    own name from its overrides and the sweep folder as its group)."""
    if not cfg:
        return []
    loggers = []
    for name, node in cfg.items():
        if node is None:
            continue
        if not isinstance(node, DictConfig):
            node = OmegaConf.create(node)
        if "_target_" not in node:
            raise ValueError(f"logger.{name} has no _target_")
        if node._target_ == WANDB_TARGET:
            node = _sweep_identity(_prepare_wandb(node), run_name, run_dir)
        loggers.append(instantiate(node))
    return loggers
