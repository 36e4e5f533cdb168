"""Helpers shared by the training tests: a tiny synthetic set and the overrides of a tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_overrides(data_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides of a run that trains zoomnet_tiny for 2 steps and validates, on the CPU, in seconds."""
    return [
        "model=zoomnet_tiny",
        "model.net.pretrained=null",  # from scratch, also under an experiment that names ImageNet weights
        "data=synthetic",
        f"data.root={data_root}",
        "data.synthetic.images=16",
        "data.synthetic.val_images=5",
        "data.synthetic.workers=1",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "+trainer.limit_train_batches=2",
        "trainer.enable_model_summary=false",
        "logger=csv",
        "~callbacks.progress",
        "callbacks.panel.every_n_epochs=1",
        "callbacks.report.plots=false",  # 2 s of matplotlib per run; the report's own tests draw them
        f"paths.output_dir={output_dir}",
        *extra,
    ]


def render_synthetic_set(tmp_path_factory) -> Path:
    """A module fixture's tiny synthetic set (``<tmp>/synth*/set``), rendered once here exactly as the runs of
    :func:`tiny_overrides` would render it (they reuse it: same settings)."""
    from wholebody.training.run import build_datamodule, compose_config

    root = tmp_path_factory.mktemp("synth") / "set"
    build_datamodule(compose_config(tiny_overrides(root, root.parent / "unused"))).prepare_data()
    return root


def run_cli(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console script of the venv (``args[0]``) with the test environment."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


try:  # the probe is loaded by the training subprocess through PYTHONPATH=tests
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object


class ResumeProbe(Callback):
    """Records where training starts (global step, epoch, optimizer and scheduler state) to a JSON file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._seen_batch = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._seen_batch:
            return
        self._seen_batch = True
        opt = trainer.optimizers[0]
        steps = [float(s["step"]) for s in opt.state.values() if "step" in s]
        sched = trainer.lr_scheduler_configs[0].scheduler if trainer.lr_scheduler_configs else None
        record = {"global_step": trainer.global_step, "epoch": trainer.current_epoch, "batch_idx": batch_idx,
                  "adam_step": max(steps) if steps else 0.0,
                  "scheduler_last_epoch": getattr(sched, "last_epoch", None)}
        runs = json.loads(self.path.read_text()) if self.path.exists() else []
        self.path.write_text(json.dumps([*runs, record]))


def read_wandb_run(path: Path) -> dict:
    """Decode an offline W&B run file (``run-*.wandb``): ``{"history": [dict], "config": set of keys,
    "config_values": {key: value}, "kinds": {record type: count}, "run": {name, group, tags}, "summary": dict}``.

    The file is a LevelDB-style log (32 KiB blocks of [crc 4][length 2][type 1][data] records after a 7-byte
    ``:W&B`` header) of protobuf ``Record`` messages; wandb itself has no Python reader for it anymore.
    """
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, chunks, records = 32768, 7, [], []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        if length == 0 and kind == 0:
            pos += left  # zero padding to the end of the block
            continue
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(b"".join(chunks))
            records.append(rec)
            chunks = []
    history, config, values, kinds, run, summary = [], set(), {}, {}, {}, {}
    for r in records:
        k = r.WhichOneof("record_type")
        kinds[k] = kinds.get(k, 0) + 1
        if k == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif k in ("config", "run"):
            items = r.config.update if k == "config" else r.run.config.update
            for i in items:
                key = i.key or "/".join(i.nested_key)
                config.add(key)
                values[key] = json.loads(i.value_json)
            if k == "run":
                run = {"name": r.run.display_name, "group": r.run.run_group, "tags": list(r.run.tags)}
        elif k == "summary":
            summary |= {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.summary.update}
    return {"history": history, "config": config, "config_values": values, "kinds": kinds, "run": run,
            "summary": summary}


class KillInsideSave(Callback):
    """SIGKILLs its own process in the middle of rewriting ``last.ckpt`` (once a previous one exists).

    It records which file ``trainer.save_checkpoint`` is writing, then kills after half the bytes
    reach the disk, wherever the writer puts them: inside ``torch.save`` when it writes to a real file
    (a writer that saves in place or through a temporary file), or inside ``os.sendfile`` when the bytes
    are copied (a move across filesystems, as fsspec does from ``$TMPDIR``).
    """

    def __init__(self) -> None:
        self.target: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        import io
        import signal

        import torch

        probe = self
        real_save, real_sendfile, real_trainer_save = torch.save, os.sendfile, trainer.save_checkpoint

        def armed() -> bool:
            return probe.target is not None and probe.target.name == "last.ckpt" and probe.target.exists()

        def die() -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        def save_checkpoint(filepath, *args, **kwargs):
            probe.target = Path(filepath)
            try:
                return real_trainer_save(filepath, *args, **kwargs)
            finally:
                probe.target = None

        def save(obj, f, *args, **kwargs):
            if not armed() or isinstance(f, io.BytesIO):
                return real_save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            if hasattr(f, "write"):
                f.write(data[: len(data) // 2])
                f.flush()
            else:
                with open(f, "wb") as out:
                    out.write(data[: len(data) // 2])
            die()

        def sendfile(out_fd, in_fd, offset, count):
            if not armed():
                return real_sendfile(out_fd, in_fd, offset, count)
            real_sendfile(out_fd, in_fd, offset, max(1, os.fstat(in_fd).st_size // 2))
            die()

        torch.save, os.sendfile, trainer.save_checkpoint = save, sendfile, save_checkpoint


class SlowSteps(Callback):
    """Writes ``marker`` once the first optimizer step is done and waits ``delay`` seconds after every step:
    a signal sent once the marker exists lands inside training (the tests of SIGTERM and SIGINT)."""

    def __init__(self, marker: str, delay: float = 0.3) -> None:
        self.marker = Path(marker)
        self.delay = delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        if trainer.global_step >= 1 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
        time.sleep(self.delay)


class SignalAt(Callback):
    """Sends ``signum`` to its own process once, after optimizer step ``step`` (an in-process test's SIGTERM or
    Ctrl-C arriving inside training), or after the first validation batch outside fitting (``validation``)."""

    def __init__(self, signum: int, step: int = 1, validation: bool = False) -> None:
        self.signum = int(signum)
        self.step = step
        self.validation = validation
        self._sent = False

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        import signal

        if self.validation and not trainer.training and not self._sent:
            self._sent = True
            os.kill(os.getpid(), signal.Signals(self.signum))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import signal

        if trainer.global_step >= self.step and not self._sent:
            self._sent = True
            os.kill(os.getpid(), signal.Signals(self.signum))
