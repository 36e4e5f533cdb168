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


def build_loggers(cfg: Mapping[str, Any] | DictConfig | None) -> list[Any]:
    """Instantiate every logger node of ``cfg.logger`` (a mapping name -> node with ``_target_``)."""
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
            node = _prepare_wandb(node)
        loggers.append(instantiate(node))
    return loggers
