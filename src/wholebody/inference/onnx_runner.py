"""Running an exported crop model (``wholebody-export``, :mod:`wholebody.inference.export`) in ONNX Runtime.

The file's metadata (``wholebody`` key, JSON: model config, input size, refine, flip test, output names,
batch) is data from whoever made the file: its model config is checked against the allow-list
(:func:`~wholebody.inference.checkpoint.checked_model_config`) before anything is built from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wholebody.inference.checkpoint import (
    CheckpointInfo,
    InferenceError,
    checked_model_config,
    checkpoint_info,
)

#: the metadata key of an exported file
META_KEY = "wholebody"
#: the graph's input: uint8 (B, 3, H, W) RGB crops
INPUT_NAME = "images"


class OnnxRunner:
    """An exported crop model in ONNX Runtime: uint8 crops (B, 3, H, W) -> dict of output tensors.

    A static-batch model gets shorter batches padded (and the padding cut off the outputs) and longer
    ones split. ``threads``: ONNX Runtime's intra-op threads (default: its own choice, the physical cores).
    Idle pool threads sleep rather than spin (``spin=False``): on cores shared with other work, spinning
    threads halved the speed of a 2-thread session in our measurements (the same reason the command-line
    tools set ``OMP_WAIT_POLICY=PASSIVE`` for PyTorch).
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None,
                 spin: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InferenceError(f"{self.path}: not a loadable ONNX model ({first})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise InferenceError(f"{self.path}: no '{META_KEY}' metadata: not exported by wholebody-export")
        try:
            meta = json.loads(raw)
        except ValueError as e:
            raise InferenceError(f"{self.path}: its '{META_KEY}' metadata is not JSON ({e})") from None
        if not isinstance(meta, dict):
            raise InferenceError(f"{self.path}: its '{META_KEY}' metadata is a {type(meta).__name__}, not a mapping")
        # the metadata is data from whoever made the file: its model config goes through the allow-list
        meta["model_config"] = checked_model_config(meta.get("model_config"), self.path)
        self.info: CheckpointInfo = checkpoint_info(self.path, meta, meta["model_config"])
        batch = meta.get("batch_size")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise InferenceError(f"{self.path}: its '{META_KEY}' metadata has batch_size {batch!r}, not null or a count")
        self.metadata: dict[str, Any] = meta
        self.names = [o.name for o in self.session.get_outputs()]
        self.batch_size: int | None = batch

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """uint8 (B, 3, H, W) -> the outputs (numpy) in ``self.names`` order."""
        b = images.shape[0]
        n = self.batch_size
        if n is None or b == n:
            return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images)})
        chunks = []
        for s in range(0, b, n):
            part = images[s: s + n]
            k = part.shape[0]
            if k < n:
                part = np.concatenate([part, np.zeros((n - k, *part.shape[1:]), part.dtype)])
            chunks.append([o[:k] for o in self.session.run(None, {INPUT_NAME: np.ascontiguousarray(part)})])
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.names))]

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = self.run(images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images))
        return {k: torch.from_numpy(v) for k, v in zip(self.names, outs)}


__all__ = ["INPUT_NAME", "META_KEY", "OnnxRunner"]
