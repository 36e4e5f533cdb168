"""``train_staged(cfg)``: a recipe of several training stages run as one job (the paper's BodyNet ->
heads -> end-to-end schedule, ``+experiment=zoomnet_staged``), each stage starting from an earlier one's
final checkpoint.

The config holds ``staged.stages``: an ordered mapping ``stage name -> config fragment`` (what that stage
changes, e.g. conf/stage/body.yaml), and ``staged.init``: ``stage name -> {from: <earlier stage>,
modules: [...] | null}``. Stage ``s`` is the job's config with ``staged.stages.s`` merged over it, run by
:func:`wholebody.training.run.train` in its own folder ``<run>/<s>/``; its network's ``init_from`` gets
``<run>/<from>/checkpoints/last.ckpt`` (after any ``init_from`` of the command's own).

A stage that finishes writes ``<run>/<s>/stage_done.json`` (atomically): with ``ckpt_path=last`` the
same command skips the stages holding it and resumes the first one without it from its ``last.ckpt``
(or starts it, when it saved none).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from wholebody.conf.folders import point_latest, run_started
from wholebody.io_utils import write_json_atomic
from wholebody.training.run import ConfigError, _rank, checkpoint_dir, run_folder, save_run_config, train
from wholebody.training.signals import SignalStop, Stopped

log = logging.getLogger(__name__)

#: The marker of a finished stage, in its folder.
DONE = "stage_done.json"


def stage_names(cfg: DictConfig) -> list[str]:
    """The stages of ``cfg.staged`` in the order they run; checks the ``init`` entries name earlier stages."""
    stages = cfg.staged.get("stages") if cfg.get("staged") else None
    if not stages:
        raise ConfigError("staged.stages: no stages (a mapping: stage name -> the config it changes)")
    names = [str(n) for n in stages]
    for name in names:  # each is a folder of the run: one plain name
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise ConfigError(f"staged.stages: {name!r} is not a plain folder name (a stage runs in <run>/<stage>/)")
    for name, spec in (cfg.staged.get("init") or {}).items():
        if name not in names:
            raise ConfigError(f"staged.init.{name}: no such stage (the stages are {names})")
        source = spec.get("from") if isinstance(spec, DictConfig) else None
        if source not in names[: names.index(name)]:
            raise ConfigError(f"staged.init.{name}.from: {source!r} is not a stage before {name!r} ({names})")
    return names


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, DictConfig):
        for k in node:
            yield from _leaf_keys(node._get_node(k), f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def check_overrides(cfg: DictConfig, overrides: list[str], groups: set[str] = frozenset()) -> None:
    """A command-line override of a key that a stage sets would be replaced in that stage, silently:
    refused, naming the per-stage key to use instead. ``groups``: the config groups (``model=...`` picks
    a file, it sets no key)."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.startswith("staged.") or key in groups:
            continue
        for name in cfg.staged.stages:
            for leaf in _leaf_keys(cfg.staged.stages[name]):
                if leaf == key or leaf.startswith(key + ".") or key.startswith(leaf + "."):
                    raise ConfigError(f"{override}: stage {name!r} sets {leaf} itself; override "
                                      f"staged.stages.{name}.{leaf}=... (per stage) instead")


def stage_config(cfg: DictConfig, name: str, resume: bool) -> DictConfig:
    """The config of stage ``name``: ``cfg`` less ``staged``, with the stage's fragment merged over it, its
    own folder, its network initialised from the earlier stage it names, and ``ckpt_path=last`` when
    ``resume`` and it saved a ``last.ckpt``."""
    root = Path(cfg.paths.run_dir)
    base = copy.deepcopy(cfg)
    OmegaConf.set_struct(base, False)
    del base["staged"]
    out = OmegaConf.merge(base, cfg.staged.stages[name])
    with open_dict(out):
        out.paths.run_dir = str(root / name)
        out.name = f"{cfg.name}-{name}"
        spec = (cfg.staged.get("init") or {}).get(name)
        if spec is not None:
            entry: dict[str, Any] = {"path": str(root / spec["from"] / "checkpoints" / "last.ckpt")}
            if spec.get("modules"):
                entry["modules"] = list(spec["modules"])
            else:  # every tensor replaced: ImageNet weights would be read and mapped for nothing
                if out.model.net.get("pretrained") is not None:
                    out.model.net.pretrained = None
            own = out.model.net.get("init_from") or []
            own = [own] if isinstance(own, (str, Path, Mapping)) else list(own)  # one entry, or a list of them
            out.model.net.init_from = [*own, entry]  # later entries override earlier ones
        out.ckpt_path = "last" if resume and (checkpoint_dir(out) / "last.ckpt").is_file() else None
    return out


def read_marker(path: Path, name: str, checkpoint: Path) -> dict[str, float]:
    """The final metrics a finished stage's marker records, after checking that it is the marker this
    package writes for stage ``name``: a JSON object naming the stage, an ``epochs`` count, finite numeric
    metrics, and as its checkpoint the stage's own ``checkpoint`` (``<stage>/checkpoints/last.ckpt``; the
    same last three path parts are accepted, for a run folder moved since), which must exist: the next
    stage starts from it. Else :class:`ConfigError` in one line naming the marker."""
    fix = "delete it to run that stage again"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: unreadable stage marker ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                          f"{fix}") from None

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{path}: not a stage marker of stage {name!r} ({why}); {fix}")

    if not isinstance(record, dict):
        raise bad(f"a JSON {type(record).__name__}, not an object")
    if record.get("stage") != name:
        raise bad(f"it names stage {str(record.get('stage'))[:80]!r}")
    epochs = record.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise bad(f"epochs {str(epochs)[:40]!r} is not a positive integer")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        raise bad("metrics is not an object")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"metric {key[:80]!r} is {str(value)[:40]!r}, not a finite number")
    ckpt = record.get("checkpoint")
    if not isinstance(ckpt, str) or Path(ckpt).parts[-3:] != checkpoint.parts[-3:]:
        raise bad(f"its checkpoint {str(ckpt)[:200]!r} is not the stage's {checkpoint}")
    if not checkpoint.is_file():
        raise bad(f"the stage's checkpoint {checkpoint} does not exist")
    return {str(k): float(v) for k, v in metrics.items()}


def train_staged(cfg: DictConfig) -> dict[str, float]:
    """Run the stages of ``cfg.staged`` in order (see the module docstring); returns the last stage's
    metrics (read from its marker when every stage had finished before)."""
    from hydra.core.hydra_config import HydraConfig

    names = stage_names(cfg)
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        check_overrides(cfg, [str(o) for o in hc.overrides.task], set(hc.runtime.choices))
    root = Path(cfg.paths.run_dir)
    value = cfg.get("ckpt_path")
    resume = value == "last"
    if value not in (None, "", "null", "last"):
        raise ConfigError(f"ckpt_path={value}: a staged run resumes with ckpt_path=last (each stage from its "
                          "own last.ckpt)")
    if resume and not any(run_started(root / n) for n in names):
        raise ConfigError(f"ckpt_path=last: no earlier staged run of this name under {root.parent} (same name= "
                          "and paths.output_dir?); drop ckpt_path=last to start a new one")
    with SignalStop():  # also between stages; each stage's train() joins it
        try:
            return _run_stages(cfg, names, resume)
        except Stopped as e:
            if not e.bare:  # a stage's train() said where it stopped
                raise
            raise Stopped(e.signum, (f"stopped by {signal.Signals(e.signum).name} between stages: the finished stages "
                                     "keep their stage_done.json; resume by repeating the command with ckpt_path=last")
                          if _rank() == 0 else "") from None


def _run_stages(cfg: DictConfig, names: list[str], resume: bool) -> dict[str, float]:
    metrics: dict[str, float] = {}
    with run_folder(cfg, what="staged run") as root:  # rank 0: a second staged run here is refused first
        started = [n for n in names if run_started(root / n)]
        if not resume and started and _rank() == 0:  # DDP ranks started by Lightning join rank 0's run folder
            if not cfg.get("overwrite", False):
                raise ConfigError(f"{root} holds the stages {started} of an earlier staged run. Resume it with "
                                  "ckpt_path=last, start afresh there with overwrite=true, or leave out "
                                  "hydra.run.dir")
            for n in started:  # each stage's train() clears its own checkpoints, metrics and evaluations
                (root / n / DONE).unlink(missing_ok=True)
        save_run_config(cfg, root)
        if _rank() == 0:
            point_latest(root)
        for name in names:
            done = root / name / DONE
            if done.is_file():
                metrics = read_marker(done, name, checkpoint_dir(stage_config(cfg, name, False)) / "last.ckpt")
                log.info("stage %s finished earlier (%s): skipped", name, done)
                continue
            stage_cfg = stage_config(cfg, name, resume)
            log.info("stage %s: %s%s", name, stage_cfg.paths.run_dir,
                     " (resuming its last.ckpt)" if stage_cfg.ckpt_path else "")
            metrics = train(stage_cfg)
            if _rank() == 0:
                write_json_atomic(done, {
                    "stage": name,
                    "checkpoint": str(checkpoint_dir(stage_cfg) / "last.ckpt"),
                    "epochs": int(stage_cfg.trainer.max_epochs),
                    "metrics": metrics,
                })
    return metrics

