"""``train(cfg)``: the whole training job as a plain function of a composed config, and the pieces it
shares with :func:`wholebody.training.evaluate.evaluate` (building the datamodule, module and Trainer,
the run folder's lock, the final stats files).

``wholebody-train`` is a thin ``@hydra.main`` wrapper around it, and tests call it directly with
configs composed by :func:`compose_config`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.plugins.io import CheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from wholebody.conf.folders import (
    ResumeError,
    is_stamp,
    override_change,
    point_latest,
    recorded_overrides,
    run_started,
    without_ckpt_path,
)
from wholebody.evaluation.metric_names import metric_name
from wholebody.io_utils import FolderInUseError, folder_lock, write_bytes_atomic, write_json_atomic
from wholebody.training.callbacks import evaluation_callback
from wholebody.training.checkpoint_io import (
    AtomicCheckpointIO,
    checkpoint_problem,
    newest_intact,
    remove_stale_temporaries,
)
from wholebody.training.loggers import build_loggers, code_version
from wholebody.training.module import PoseModule
from wholebody.training.signals import SignalStop, Stopped, raise_if_signalled

log = logging.getLogger(__name__)

#: The default of ``optimized_metric`` (conf/train.yaml): what sweepers optimise and ModelCheckpoint monitors.
OPTIMIZED_METRIC = metric_name("wholebody", "AP")


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and why."""


def _stop_message(cfg: DictConfig, trainer: L.Trainer | None, signum: int, phase: str) -> str:
    """One line: which signal stopped the run where, what was saved, how to resume."""
    from wholebody.training.callbacks import LastCheckpoint

    name = signal.Signals(signum).name
    resume = "resume by repeating the command with ckpt_path=last"
    if _in_sweep():
        resume = "the sweep's later jobs did not run; resume the sweep by repeating its command with ckpt_path=last"
    last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None) if trainer is not None else None
    path = last.path if last is not None else checkpoint_dir(cfg) / "last.ckpt"
    if last is not None and last.stopped_at is not None:
        epoch, step = last.stopped_at
        return f"stopped by {name} at epoch {epoch}, step {step}: saved {path}; {resume}"
    if path.is_file():
        if phase == "final validation":
            return (f"stopped by {name} in the final validation: training had finished, {path} holds its end; "
                    f"{resume} (it runs the final validation)")
        return f"stopped by {name} {phase_words(phase)}: {path} is the last save; {resume}"
    if trainer is not None and last is None and phase == "training":
        return f"stopped by {name} in training: nothing saved (callbacks.last is off); run the command again"
    return f"stopped by {name} {phase_words(phase)}: no checkpoint saved yet; run the command again"


def phase_words(phase: str) -> str:
    return {"setup": "before training started", "training": "in training", "final validation":
            "in the final validation", "final files": "while writing the final files"}.get(phase, phase)


def checkpoint_dir(cfg: DictConfig) -> Path:
    return Path(cfg.callbacks.checkpoint.dirpath) if cfg.get("callbacks") and cfg.callbacks.get("checkpoint") else Path(cfg.paths.run_dir) / "checkpoints"


def resolve_ckpt_path(cfg: DictConfig, resume: bool = False) -> str | None:
    """``ckpt_path``: null, ``last`` (this run folder's ``checkpoints/last.ckpt``) or a file.

    A damaged ``last.ckpt`` (cut short by a kill, or a bad CRC) is passed over for the newest intact
    checkpoint of the folder, with a warning naming both; a damaged file given by name is an error.
    With ``resume`` (training) the file must also be a Lightning training checkpoint (:func:`resume_problem`);
    an evaluation reads network-only files too.
    """
    value = cfg.get("ckpt_path")
    if value in (None, "", "null"):
        return None
    if value == "last":
        run_dir = Path(cfg.paths.run_dir)
        path = checkpoint_dir(cfg) / "last.ckpt"
        if not path.exists():
            if _in_sweep() and _sweep_started(run_dir):
                log.warning("ckpt_path=last: job %s of the resumed sweep %s saved no checkpoint before; it starts "
                            "afresh", run_dir.name, run_dir.parent)
                return None
            raise ConfigError(_nothing_to_resume(run_dir, path))
        _check_resumed_overrides(run_dir)
        problem = checkpoint_problem(path) or (resume_problem(path) if resume else None)
        if problem is None:
            return str(path)
        other = newest_intact(path.parent, exclude=(path,))
        if other is not None and resume and resume_problem(other) is not None:
            other = None  # intact, but not a training checkpoint either
        if other is None:
            raise ConfigError(f"ckpt_path=last: {path} is damaged ({problem}) and {path.parent} holds no intact "
                              "checkpoint to resume from")
        log.warning("ckpt_path=last: %s is damaged (%s); resuming from the newest intact checkpoint, %s",
                    path, problem, other)
        return str(other)
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={value}: no such checkpoint file")
    problem = checkpoint_problem(path) or (resume_problem(path) if resume else None)
    if problem is not None:
        raise ConfigError(f"ckpt_path={value}: {problem}")
    return str(path)


#: What Lightning reads to resume a fit, and the type each must have.
RESUME_KEYS: dict[str, type | tuple[type, ...]] = {
    "pytorch-lightning_version": str, "state_dict": dict, "epoch": int, "global_step": int,
    "optimizer_states": list, "lr_schedulers": list, "loops": dict,
}


def resume_problem(path: str | Path) -> str | None:
    """None when ``path`` holds a Lightning training checkpoint (what ``ckpt_path=`` resumes: weights,
    optimizer and scheduler states, loop progress), else what it is instead, in words. Read with
    ``weights_only=True`` and memory-mapped: the tensors' bytes are not read (a plain state dict, the
    network-only file of ``wholebody-convert``, a list: Lightning itself stops on them with a KeyError)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and type errors alike: not a checkpoint of ours
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"not readable with torch.load(weights_only=True) ({first})"
    if not isinstance(obj, dict):
        return f"holds a {type(obj).__name__}, not a Lightning training checkpoint"
    missing = [k for k in RESUME_KEYS if k not in obj]
    if "state_dict" in missing or "optimizer_states" in missing:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            what = "a plain state dict"
        elif "state_dict" in obj:
            what = "network weights only (as wholebody-convert and a weights-only save write)"
        else:
            what = f"a dict of {', '.join(sorted(map(str, obj))[:4]) or 'nothing'}"
        return (f"holds {what}, not a Lightning training checkpoint to resume (no {', '.join(missing)}); a new run "
                f"starts from its weights with model.net.init_from=[{path}]")
    if missing:
        return f"is not a complete Lightning training checkpoint (no {', '.join(missing)})"
    wrong = [k for k, t in RESUME_KEYS.items() if not isinstance(obj[k], t) or (t is int and isinstance(obj[k], bool))]
    if wrong or obj["epoch"] < 0 or obj["global_step"] < 0:
        return f"is not a valid Lightning training checkpoint ({', '.join(wrong) or 'epoch/global_step'} of the wrong type or range)"
    return None


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_started(job_dir: Path) -> bool:
    """Whether another job of ``job_dir``'s sweep folder ran before (the sweep is being resumed)."""
    parent = job_dir.parent
    return parent.is_dir() and any(d != job_dir and d.is_dir() and run_started(d) for d in parent.iterdir())


def _nothing_to_resume(run_dir: Path, path: Path) -> str:
    if _in_sweep() and is_stamp(run_dir.parent.name):
        return (f"ckpt_path=last: no earlier sweep of this name under {run_dir.parent.parent} to resume "
                "(same name= and paths.output_dir?); drop ckpt_path=last to start a new sweep")
    if is_stamp(run_dir.name) and not (run_dir / ".hydra").exists():
        return (f"ckpt_path=last: no earlier run of this name under {run_dir.parent} holds checkpoints/last.ckpt "
                "(same name= and paths.output_dir?); drop ckpt_path=last to start a new run")
    return f"ckpt_path=last: {run_dir} holds no {path.relative_to(run_dir)} (the run saved none before it stopped)"


def _check_resumed_overrides(run_dir: Path) -> None:
    """A resumed run repeats its overrides: in a sweep a job whose overrides differ from those its folder
    ran with is another grid (an error, never a half-mixed sweep); a single run is warned of changes."""
    from hydra.core.hydra_config import HydraConfig

    earlier_file = run_dir / ".hydra" / "overrides.yaml"
    if not HydraConfig.initialized() or not earlier_file.is_file():
        return
    try:
        earlier = recorded_overrides(earlier_file)
    except ResumeError as e:
        raise ConfigError(f"ckpt_path=last: {e}") from None
    change = override_change(without_ckpt_path(earlier),
                             without_ckpt_path([str(o) for o in HydraConfig.get().overrides.task]))
    if change is None:
        return
    if _in_sweep():
        raise ConfigError(f"ckpt_path=last: job {run_dir.name} of the sweep {run_dir.parent} had other overrides "
                          f"({change}): a resumed sweep repeats the earlier command; drop ckpt_path=last to "
                          "start a new sweep")
    log.warning("ckpt_path=last: resuming %s with changed overrides: %s", run_dir, change)


def _guard_run_dir(cfg: DictConfig, ckpt_path: str | None) -> None:
    ckpts = checkpoint_dir(cfg)
    old = sorted(ckpts.glob("*.ckpt")) if ckpt_path is None and ckpts.exists() else []
    if not old:
        return
    if not cfg.get("overwrite", False):
        raise ConfigError(
            f"{ckpts} already holds checkpoints of an earlier run. Resume it with ckpt_path=last, "
            "start afresh there with overwrite=true, or leave out hydra.run.dir (each run then gets a new folder)"
        )
    run_dir = Path(cfg.paths.run_dir)
    log.info("overwrite=true: removing the earlier run's checkpoints, metrics and evaluations in %s", run_dir)
    for folder in (ckpts, run_dir / "csv", run_dir / "eval"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _guard_multirun_ddp(cfg: DictConfig) -> None:
    """A sweep job of several devices with DDP needs a launcher that starts one process per device
    (SLURM). Lightning would otherwise start the other ranks by re-running ``sys.argv``: from inside a
    local sweep (Hydra's basic launcher runs the jobs one after another in this process) or from a
    Ray/submitit worker process, that is not this job's command."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    launcher = str(hc.launcher.get("_target_", "")) if hc.get("launcher") is not None else ""
    strategy = cfg.trainer.get("strategy")
    ddp = "ddp" in str(strategy.get("_target_", "") if isinstance(strategy, DictConfig) else strategy).lower()
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, str) and devices != "auto":
        devices = int(devices) if devices.lstrip("-").isdigit() else len(devices.split(","))
    count = len(devices) if not isinstance(devices, (int, str)) else devices  # a list of device ids, or a count
    many = count in (-1, "auto") or count > 1 or int(cfg.trainer.get("num_nodes", 1) or 1) > 1
    if hc.mode != RunMode.MULTIRUN or not ddp or not many or launcher.endswith("SlurmLauncher"):
        return
    where = ("a local sweep (-m, Hydra's basic launcher)" if launcher.endswith("BasicLauncher")
             else f"a sweep through {launcher.rsplit('.', 1)[-1]}")
    raise ConfigError(
        f"{where} cannot run DDP jobs on several devices (trainer.devices={devices}): launch the sweep on the "
        "cluster with hydra/launcher=submitit_slurm_example (pip install wholebody[slurm]; see docs/training.md), "
        "or sweep with trainer.devices=1 (one device per job; Ray runs such jobs in parallel)"
    )


def _validate(cfg: DictConfig) -> None:
    _guard_multirun_ddp(cfg)
    w, h = cfg.model.input_size
    if int(w) <= 0 or int(h) <= 0 or int(w) % 32 or int(h) % 32:
        raise ConfigError(f"model.input_size must be positive multiples of 32, got {list(cfg.model.input_size)}")
    if cfg.trainer.get("max_epochs", 1) is not None and int(cfg.trainer.get("max_epochs", 1)) < 1:
        raise ConfigError(f"trainer.max_epochs must be >= 1, got {cfg.trainer.max_epochs}")
    if cfg.get("oracle_boxes") and cfg.data.get("val_boxes"):
        raise ConfigError("oracle_boxes=true needs the ground-truth persons (their part boxes); "
                          "detected persons (data.val_boxes) have none")
    # settings read only at the first validation or the end of the run: refused before any training
    callbacks = cfg.get("callbacks") or {}
    _check_fraction("nms_thr", cfg.get("nms_thr"), null=True)
    if callbacks.get("evaluation") is not None:
        _check_fraction("callbacks.evaluation.nms_thr", callbacks.evaluation.get("nms_thr"), null=True)
    if callbacks.get("panel") is not None:
        _check_fraction("callbacks.panel.score_thr", callbacks.panel.get("score_thr", 0.3), null=False)
    _check_monitored("optimized_metric", str(cfg.get("optimized_metric", OPTIMIZED_METRIC)))
    if callbacks.get("checkpoint") is not None and callbacks.checkpoint.get("monitor") is not None:
        _check_monitored("callbacks.checkpoint.monitor", str(callbacks.checkpoint.monitor))


def _check_fraction(key: str, value: Any, null: bool) -> None:
    """``value`` a number in [0, 1] (or null, when ``null``), else :class:`ConfigError` naming ``key``."""
    if value is None and null:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:  # NaN fails too
        raise ConfigError(f"{key} must be a number in [0, 1]{' or null' if null else ''}, got {value!r}")


def validation_metric_names() -> set[str]:
    """Every ``val/...`` name a validation logs: the evaluation's stats per part, the heads' mean, the part
    boxes' AP (:class:`~wholebody.training.callbacks.EvaluationCallback`), and the losses."""
    from wholebody.keypoints import BOX_PARTS, EVAL_PARTS
    from wholebody.training.callbacks import LOGGED_BOX_STATS, LOGGED_STATS

    names = {metric_name(part, k) for part in EVAL_PARTS for k in LOGGED_STATS}
    names |= {metric_name("heads", k) for k in ("AP", "AR")}
    names |= {metric_name(part, k, "val/boxes") for part in BOX_PARTS for k in LOGGED_BOX_STATS}
    return names


def _check_monitored(key: str, name: str) -> None:
    """A ``val/`` metric no validation logs would stop the run at its first validation (ModelCheckpoint
    finds no such key) or after all its training (the sweeper's objective): refused now. The losses
    (``val/loss...``, named by the loss) and other prefixes (``train/...``) are left to those checks."""
    if name.startswith("val/") and not name.startswith("val/loss") and name not in validation_metric_names():
        close = sorted(n for n in validation_metric_names() if n.rsplit("/", 1)[0] == name.rsplit("/", 1)[0])[:6]
        raise ConfigError(f"{key}={name}: not a metric of this run: no validation logs it (e.g. {OPTIMIZED_METRIC}"
                          f"{'; ' + ', '.join(close) if close else ''})")


def build_datamodule(cfg: DictConfig, stage: str | None = None) -> L.LightningDataModule:
    """The datamodule of ``cfg``; with ``stage`` also prepared and set up for it (e.g. ``"validate"``)."""
    datamodule = instantiate(cfg.data, _convert_="all")
    if stage is not None:
        datamodule.prepare_data()
        datamodule.setup(stage)
    return datamodule


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, PoseModule, L.Trainer]:
    """Instantiate the datamodule, the LightningModule and the Trainer (callbacks, loggers) of ``cfg``."""
    datamodule = build_datamodule(cfg)
    try:
        module: PoseModule = instantiate(cfg.module, _convert_="all")
    except Exception as e:  # Hydra wraps the constructor's error; a bad value (init_from, a size) is the user's
        cause = e.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError)) and not isinstance(cause, ConfigError):
            raise ConfigError(f"model: {cause}") from None
        raise
    # set after instantiation: passed through instantiate, its _target_ nodes would be built too
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)
    if cfg.get("channels_last"):
        module.use_channels_last()
    if cfg.get("compile"):
        module.compile_network()
    callbacks = [_instantiate_callback(name, node) for name, node in (cfg.get("callbacks") or {}).items()
                 if node is not None]
    loggers = build_loggers(cfg.get("logger"), run_name=str(cfg.name), run_dir=str(cfg.paths.run_dir))
    if not loggers:  # nothing to log the learning rate to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # checkpoints are written atomically in their own folder (checkpoint_io.py), whatever the strategy
    plugins = [instantiate(p) for p in (cfg.trainer.get("plugins") or [])]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers if loggers else False,
                                     plugins=plugins)
    if loggers:
        params = {**OmegaConf.to_container(cfg, resolve=True), "code": code_version()}
        for lg in loggers:
            lg.log_hyperparams(params)
    return datamodule, module, trainer


def _instantiate_callback(name: str, node: DictConfig) -> L.Callback:
    """``callbacks.<name>`` built; a value its constructor refuses (``every_n_epochs: 0``) is a
    :class:`ConfigError` naming the key (Hydra wraps it in an error whose traceback the CLI would print)."""
    try:
        return instantiate(node)
    except Exception as e:
        cause = e.__cause__
        if isinstance(cause, (ValueError, TypeError)) and not isinstance(cause, ConfigError):
            raise ConfigError(f"callbacks.{name}: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}") from None
        raise


def train(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg`` (resuming ``ckpt_path`` when set), validate the best checkpoint, return the metrics.

    Returns a flat dict of floats including ``cfg.optimized_metric`` (what Hydra sweepers optimise).
    Writes ``stats.json`` (six parts x ten stats) and ``results.json`` into the run folder.
    """
    trainer: L.Trainer | None = None
    phase = "setup"
    with SignalStop() as stop, run_folder(cfg) as run_dir:
        try:
            ckpt_path = resolve_ckpt_path(cfg, resume=True)
            prepare(cfg)
            _guard_run_dir(cfg, ckpt_path)
            save_run_config(cfg, run_dir)
            if _rank() == 0:
                point_latest(run_dir)
            datamodule, module, trainer = build(cfg)
            t0 = time.perf_counter()
            phase = "training"
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            raise_if_signalled(trainer)  # a signal after the loops' last check (the last batch, on_train_end)
            metrics = _scalar_metrics(trainer)  # the last training metrics; the final validation below replaces its own
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
            phase = "final validation"
            if cfg.get("test_after_fit", True):
                trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True)
                raise_if_signalled(trainer)
            phase = "final files"
            return finish(cfg, trainer, metrics, Path(cfg.paths.run_dir), "train", time.perf_counter() - t0)
        except SystemExit as e:  # Stopped; Lightning's SIGTERMException; its sys.exit(1) after a second Ctrl-C
            signum = stop.stop_signal(e)
            if signum is None:
                raise
            raise Stopped(signum, _stop_message(cfg, trainer, signum, phase) if _rank() == 0 else "") from None


@contextlib.contextmanager
def run_folder(cfg: DictConfig, what: str = "run") -> Iterator[Path]:
    """Hold ``cfg.paths.run_dir`` for this run (rank 0: the folder's lock; a second run there is refused)
    and clear the temporary files an interrupted checkpoint save left in it."""
    run_dir = Path(cfg.paths.run_dir)
    if _rank() != 0:  # DDP ranks started by the launcher: rank 0 holds the folder for them all
        yield run_dir
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(run_dir, what=what))
        except FolderInUseError as e:
            raise ConfigError(str(e)) from None
        if checkpoint_dir(cfg).is_dir():
            remove_stale_temporaries(checkpoint_dir(cfg))
        yield run_dir


def save_run_config(cfg: DictConfig, folder: Path) -> None:
    """Write ``folder/.hydra/{config,hydra,overrides}.yaml`` (what Hydra itself writes before a job starts;
    conf/train.yaml turns that off with ``hydra.output_subdir: null`` so that a run refused because its
    folder is in use cannot overwrite the running one's files). Rank 0 only, under the folder's lock."""
    from hydra.core.hydra_config import HydraConfig

    if _rank() != 0 or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    out = folder / ".hydra"
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hydra_cfg})),
                       ("overrides.yaml", hydra_cfg.overrides.task)):
        write_bytes_atomic(out / name, OmegaConf.to_yaml(node).encode())


def prepare(cfg: DictConfig) -> None:
    """Check the config's values, set the matmul precision and seed everything."""
    _validate(cfg)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    L.seed_everything(cfg.seed, workers=True)


def _rank() -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def finish(cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float], out_dir: Path, what: str,
           elapsed: float) -> dict[str, float]:
    """After the last validation: the metrics (with ``time_s``), ``stats.json``/``results.json`` in
    ``out_dir`` and the table (rank 0), loggers closed. The config's ``optimized_metric`` must be among
    the metrics (a typo in a sweep's metric name is an error, not a silent ``None``)."""
    metrics = {**metrics, **_scalar_metrics(trainer), "time_s": elapsed}
    evaluation = evaluation_callback(trainer)
    if trainer.is_global_zero and evaluation is not None and evaluation.last_stats is not None:
        write_json_atomic(out_dir / "stats.json", evaluation.last_stats)
        write_json_atomic(out_dir / "results.json", evaluation.last_rows, indent=False)
        print_stats_table(evaluation.last_stats, title=f"{cfg.name} ({what}, {elapsed / 60:.1f} min)")
    _finish_loggers(trainer)
    name = cfg.get("optimized_metric", OPTIMIZED_METRIC)
    if evaluation is not None and evaluation.last_stats is not None and name not in metrics:  # a validation ran
        raise ConfigError(f"optimized_metric={name}: not a metric of this run (e.g. {OPTIMIZED_METRIC}; "
                          f"it logged {sorted(k for k in metrics if k.startswith('val/'))[:6]} ...)")
    return metrics


def _scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}


def _finish_loggers(trainer: L.Trainer) -> None:
    """Close the wandb run so its summary and files are complete on disk (offline runs too)."""
    if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def print_stats_table(stats: dict[str, dict[str, float]], title: str = "COCO-WholeBody") -> None:
    """Print the six-part stats table (rich when available in a terminal, plain text otherwise)."""
    from wholebody.evaluation import STAT_NAMES, format_table

    text = format_table(stats, STAT_NAMES)
    if os.environ.get("WHOLEBODY_PLAIN_OUTPUT"):
        print(title)
        print(text)
        return
    try:
        from rich.console import Console

        Console().print(f"[bold]{title}[/bold]\n{text}")
    except ImportError:  # pragma: no cover
        print(title)
        print(text)



def compose_config(overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None, config_name: str = "train") -> DictConfig:
    """Compose the training config from Python (tests, notebooks, the demo), as the CLI would.

    ``run_dir``: the run folder (Hydra's run dir); default ``hydra.run.dir`` as the CLI resolves it: a
    new ``${paths.output_dir}/${name}/<timestamp>``, or with ``ckpt_path=last`` the newest earlier one.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_module("wholebody.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir) if run_dir is not None else str(cfg.hydra.run.dir)
        del cfg["hydra"]
    return cfg
