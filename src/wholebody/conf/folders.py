"""Where a run or a sweep writes: a new timestamped folder per run, or the newest earlier one when it
resumes (``ckpt_path=last``). Path logic, light (no torch, nothing of the training), used by the
``wholebody.run_dir`` resolver of conf/train.yaml, by ``compose_config`` and by ``train(cfg)``.

    outputs/<name>/2026-12-01_10-57-28/          a single run (hydra.run.dir)
    outputs/<name>/latest -> 2026-12-01_10-57-28  the newest run of that name
    outputs/multirun/<name>/2026-12-01_11-02-03/<job number>/   a sweep's jobs (hydra.sweep.dir)
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

#: ``YYYY-mm-dd_HH-MM-SS``, with ``-N`` when that second's folder was already taken.
STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)(?:-(\d+))?$")
LATEST = "latest"


def is_stamp(name: str) -> bool:
    """Whether ``name`` is a folder name :func:`new_folder` makes."""
    return _STAMP.match(name) is not None


def _order(name: str) -> tuple[str, int]:
    m = _STAMP.match(name)
    assert m is not None
    return m.group(1), int(m.group(2) or 0)


def stamped_folders(base: str | os.PathLike) -> list[Path]:
    """The timestamped folders under ``base``, oldest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted((p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and is_stamp(p.name)),
                  key=lambda p: _order(p.name))


def new_folder(base: str | os.PathLike, now: float | None = None) -> Path:
    """``base/<timestamp>``: the first name of this second not taken yet (``-1``, ``-2`` ... after it)."""
    base = Path(base)
    stamp = time.strftime(STAMP_FORMAT, time.localtime(now))
    path, n = base / stamp, 0
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    return path


#: What a started run leaves in its folder (its overrides, written before training; its resume point).
_RUN_MARKS = (".hydra/overrides.yaml", "checkpoints/last.ckpt")


def run_started(folder: Path) -> bool:
    """Whether a run started in ``folder`` itself."""
    return any((folder / m).exists() for m in _RUN_MARKS)


def holds_run(folder: Path) -> bool:
    """Whether a run started in ``folder`` (or, for a sweep folder, in one of its job folders)."""
    return run_started(folder) or any(child.is_dir() and run_started(child) for child in folder.iterdir())


class ResumeError(ValueError):
    """``ckpt_path=last`` on a sweep whose earlier command was another one."""


def without_ckpt_path(overrides: list[str]) -> list[str]:
    """``overrides`` less ``ckpt_path=...`` (what a resumed command adds to the earlier one)."""
    return [o for o in overrides if not o.lstrip("+~").startswith("ckpt_path=")]


def override_change(before: list[str], now: list[str]) -> str | None:
    """How two override lists differ, in words (None when equal): the overrides only one of them has, or,
    when both hold the same ones, that their order or repeats differ."""
    if before == now:
        return None
    gone = [o for o in before if o not in now]
    new = [o for o in now if o not in before]
    if gone or new:
        return f"it had {' '.join(gone) or 'nothing else'}, this command has {' '.join(new) or 'nothing else'}"
    return f"the same ones in another order or repeated: it had {' '.join(before)}"


def run_folder(base: str | os.PathLike, ckpt_path: str | None) -> str:
    """The folder of a run (or sweep) named ``base`` (``outputs/<name>``): with ``ckpt_path=last`` the
    newest earlier folder holding a run, to resume in; otherwise (or when none exists yet: ``train``
    then says there is nothing to resume) a new timestamped one."""
    if ckpt_path == "last":
        earlier = [f for f in stamped_folders(base) if holds_run(f)]
        if earlier:
            return str(earlier[-1])
    return str(new_folder(base))


def recorded_overrides(path: str | os.PathLike, key: str | None = None) -> list[str]:
    """The overrides a Hydra record holds: ``key`` (dotted, e.g. ``hydra.overrides.task`` of a sweep's
    ``multirun.yaml``) or, with None, the whole file (a job's ``.hydra/overrides.yaml``): a list of
    strings, read as written (no interpolation is resolved). Anything else (not YAML, another shape) is
    a :class:`ResumeError` naming the file."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    path = Path(path)
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - yaml's scanner/parser/constructor errors, a binary file, a folder
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ResumeError(f"{path}: not a readable Hydra record ({first})") from None
    for part in key.split(".") if key else ():
        node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
    if not isinstance(node, ListConfig):
        raise ResumeError(f"{path}: {key or 'the file'} is not a list of overrides")
    values = OmegaConf.to_container(node, resolve=False)
    if not all(isinstance(v, str) for v in values):
        raise ResumeError(f"{path}: {key or 'the file'} holds entries that are not override strings")
    return values


def check_same_sweep(folder: str | os.PathLike, overrides: list[str]) -> None:
    """A resumed sweep repeats the command-line overrides (sweep syntax, e.g. ``lr=1e-3,5e-4``;
    ``ckpt_path`` aside) that ``folder/multirun.yaml`` records; else :class:`ResumeError`: its jobs
    would be another grid's, numbered like the earlier ones. A record that is not Hydra's is one too."""
    record = Path(folder) / "multirun.yaml"
    if not record.is_file():
        return
    before = without_ckpt_path(recorded_overrides(record, "hydra.overrides.task"))
    what = override_change(before, without_ckpt_path(overrides))
    if what is not None:
        raise ResumeError(f"ckpt_path=last: the sweep {folder} ran with other overrides ({what}); repeat its "
                          "command to resume it, or drop ckpt_path=last to start a new sweep")


def point_latest(run_dir: str | os.PathLike) -> Path | None:
    """Point ``<base>/latest`` at the timestamped folder holding ``run_dir`` (a run's folder, or a
    sweep job's); replaced atomically. Returns the link, or None when ``run_dir`` was named by hand."""
    run_dir = Path(run_dir)
    stamped = next((p for p in (run_dir, run_dir.parent) if is_stamp(p.name)), None)
    if stamped is None:
        return None
    from wholebody.io_utils import link_atomic

    link = stamped.parent / LATEST
    if link.exists() and not link.is_symlink():
        return None  # a folder of the user's called "latest": left alone
    return link_atomic(stamped, link)
