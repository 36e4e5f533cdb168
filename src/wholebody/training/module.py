"""The LightningModule: a thin wrapper joining a network, its loss and the optimiser settings.

Everything model-specific lives in the network (``net(images, part_boxes)``, ``net.decode``,
``net.predict``) and the loss module (``loss(outputs, batch) -> {"total", <part>: ...}``); this class
only runs the shared step, logs per-part losses and turns predictions into results rows for the
evaluation callback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn

from wholebody.inference.checkpoint import CKPT_KEY, checkpoint_entry
from wholebody.models.postprocess import check_score_mode, result_rows, to_image

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step and the batch's persons."""


class PoseModule(L.LightningModule):
    """Train / validate / test any whole-body network of this package.

    Args:
        net: the network (e.g. ``ZoomNet``); takes uint8/0..255 RGB images (B, 3, H, W).
        loss: module mapping ``(outputs, batch)`` to a dict with ``total`` and one entry per part.
        optimizer: partial ``torch.optim`` constructor taking the parameters.
        scheduler: optional partial LR scheduler constructor taking the optimizer (stepped per epoch
            unless ``scheduler_interval="step"``).
        warmup_iters: a linear warm-up over the first ``warmup_iters`` optimizer steps (0: none): the
            learning rate rises from ``warmup_start_factor`` times the scheduled one to the scheduled one,
            step by step (``torch.optim.lr_scheduler.LinearLR``, stepped per optimizer step, chained with
            ``scheduler``: during the warm-up the rate is the product of both).
        warmup_start_factor: the warm-up's first factor (mmpose's HRNet recipe: 0.001).
        freeze: top-level sub-modules of ``net`` (e.g. ``["feature_net", "body_net"]``) left out of the
            optimizer (``requires_grad=False``) and kept in eval mode in training (their BatchNorm
            statistics stay as loaded).
        input_size: (W, H) of the network input crops.
        refine: heatmap sub-pixel refinement used when decoding ("none" | "quarter" | "dark").
        flip_test: average with the horizontally flipped pass at validation/test time.
        oracle_boxes: at validation/test, zoom into the ground-truth part boxes instead of the predicted
            ones (the oracle analysis of the paper's Table 4a); needs a network with part boxes (ZoomNet).
        score_mode: the results rows' scores: ``per_part`` or ``mmpose`` (one whole-body score written
            for every part); see :mod:`wholebody.models.postprocess`.
        model_config: the resolved model config, stored in checkpoints so inference can rebuild the net.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        input_size: tuple[int, int] = (288, 384),
        refine: str = "quarter",
        flip_test: bool = False,
        oracle_boxes: bool = False,
        scheduler_interval: str = "epoch",
        model_config: Mapping[str, Any] | None = None,
        score_mode: str = "per_part",
        warmup_iters: int = 0,
        warmup_start_factor: float = 0.001,
        freeze: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.refine = refine
        self.flip_test = bool(flip_test)
        self.oracle_boxes = bool(oracle_boxes)
        if self.oracle_boxes and "use_given_boxes" not in inspect.signature(net.forward).parameters:
            raise ValueError(f"oracle_boxes needs a network that zooms into part boxes; {type(net).__name__} has none")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        if int(warmup_iters) < 0 or not 0.0 < float(warmup_start_factor) <= 1.0:
            raise ValueError(f"warm-up: iters must be >= 0 and start_factor in (0, 1], got {warmup_iters}, "
                             f"{warmup_start_factor}")
        self.warmup_iters = int(warmup_iters)
        self.warmup_start_factor = float(warmup_start_factor)
        children = dict(net.named_children())
        unknown = [name for name in freeze if name not in children]
        if unknown:
            raise ValueError(f"freeze: {type(net).__name__} has no sub-module {unknown[0]!r} (it has {sorted(children)})")
        self.frozen = tuple(freeze)
        for name in self.frozen:
            children[name].requires_grad_(False).eval()  # Lightning keeps each sub-module's mode as it finds it
        self.score_mode = check_score_mode(score_mode)
        self.model_config = dict(model_config) if model_config is not None else None
        # the compiled forward, when there is one; kept out of the module tree (no second copy of the
        # weights in state dicts and checkpoints, and the same keys with or without compile)
        object.__setattr__(self, "_compiled", None)
        self._pending_check: tuple[torch.Tensor, int, dict[str, list[int]]] | None = None
        self._unreadable = 0  # training images replaced this epoch because they could not be read

    def train(self, mode: bool = True) -> PoseModule:
        super().train(mode)
        for name in self.frozen:  # frozen sub-modules stay in eval mode (BatchNorm statistics kept)
            getattr(self.net, name).train(False)
        return self

    # ------------------------------------------------------------------ speed switches
    def use_channels_last(self) -> None:
        self.net.to(memory_format=torch.channels_last)

    def compile_network(self, **kwargs: Any) -> None:
        """Run the forward pass through ``torch.compile`` (state-dict keys stay unchanged)."""
        object.__setattr__(self, "_compiled", torch.compile(self.net, **kwargs))

    def _forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return (self._compiled or self.net)(*args, **kwargs)

    # ------------------------------------------------------------------ batches
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # meta (ids, centre/size in float64, ...) stays on the CPU: it is only needed there to map
        # predictions back to the image, and moving it would cost transfers and syncs
        if isinstance(batch, Mapping) and "meta" in batch:
            rest = {k: v for k, v in batch.items() if k != "meta"}
            moved = super().transfer_batch_to_device(rest, device, dataloader_idx)
            moved["meta"] = batch["meta"]
            return moved
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _images(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"]
        if self.net_uses_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    @property
    def net_uses_channels_last(self) -> bool:
        p = next(self.net.parameters(), None)
        return p is not None and p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()

    # ------------------------------------------------------------------ steps
    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = self._images(batch)
        if stage == "train":
            outputs = self._forward(images, part_boxes=batch["part_boxes"], part_valid=batch["part_valid"])
        elif self.oracle_boxes:
            outputs = self._forward(images, part_boxes=batch["part_boxes"], part_valid=batch["part_valid"],
                                    use_given_boxes=True)
        else:
            outputs = self._forward(images)
        losses = self.loss(outputs, batch)
        bsz = images.shape[0]
        self.log_dict(
            {f"{stage}/loss/{k}": v.detach() for k, v in losses.items()},
            on_step=stage == "train",
            on_epoch=True,
            batch_size=bsz,
            prog_bar=False,
            sync_dist=stage != "train",
        )
        self.log(f"{stage}/loss", losses["total"].detach(), prog_bar=True, batch_size=bsz, on_step=stage == "train",
                 on_epoch=stage != "train", sync_dist=stage != "train")
        return losses["total"], outputs

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        total, _ = self._shared_step(batch, "train")
        self._check_finite(total, batch)
        if "replaced" in batch.get("meta", {}):  # a CPU tensor: counting it costs no device sync
            self._unreadable += int(batch["meta"]["replaced"].sum())
        return total

    def _predict_rows(self, batch: Mapping[str, Any], outputs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        if self.flip_test:
            decoded = self.net.predict(self._images(batch), flip_test=True, refine=self.refine, outputs=outputs)
        else:
            decoded = self.net.decode(outputs, refine=self.refine)
        return result_rows(to_image(decoded, batch["meta"], self.input_size), score_mode=self.score_mode)

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """Predictions of a validation/test batch; its loss only when the persons are ground-truth ones
        (detected persons, ``ann_id`` -1, have no targets to compare with)."""
        ann_id = batch.get("meta", {}).get("ann_id")
        if ann_id is not None and bool((ann_id < 0).all()):  # a CPU tensor: no device sync
            outputs = self._forward(self._images(batch))
        else:
            _, outputs = self._shared_step(batch, stage)
        return {"rows": self._predict_rows(batch, outputs)}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._eval_step(batch, "test")

    # ------------------------------------------------------------------ NaN guard
    def _check_finite(self, total: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """Stop on a non-finite loss, naming the step and the persons of the batch.

        On accelerators the check of step N runs at step N+1, so it never stalls the device queue.
        """
        meta = batch.get("meta", {})
        ids = {k: meta[k].tolist() for k in ("image_id", "ann_id") if k in meta}
        flag = ~torch.isfinite(total.detach())
        if total.device.type == "cpu":
            self._raise_if(flag, self.global_step, ids)
            return
        if self._pending_check is not None:
            self._raise_if(*self._pending_check)
        self._pending_check = (flag, self.global_step, ids)

    def on_train_epoch_end(self) -> None:
        if self._pending_check is not None:
            self._raise_if(*self._pending_check)
            self._pending_check = None
        # loader workers report through the samples' meta; the ranks' counts are summed here (one
        # reduction per epoch), so every rank logs the same total
        count = torch.tensor(float(self._unreadable), device=self.device)
        total = float(self.trainer.strategy.reduce(count, reduce_op="sum"))
        self.log("train/unreadable_images", total, rank_zero_only=False)
        if total > 0 and self.trainer.is_global_zero:
            log.warning("epoch %d: %d training image(s) could not be read and were replaced by the next "
                        "readable record (the loader's warnings name them)", self.current_epoch, int(total))
        self._unreadable = 0

    @staticmethod
    def _raise_if(flag: torch.Tensor, step: int, ids: dict[str, list[int]]) -> None:
        if bool(flag):
            pairs = list(zip(ids.get("image_id", []), ids.get("ann_id", [])))
            raise NonFiniteLossError(
                f"non-finite training loss at global step {step}; batch (image_id, ann_id): {pairs}. "
                "Lower the learning rate, check the data of these persons, or resume from an earlier checkpoint."
            )

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        schedulers = []
        if self.scheduler_factory is not None:
            schedulers.append({"scheduler": self.scheduler_factory(optimizer), "interval": self.scheduler_interval})
        if self.warmup_iters > 0:  # after the main one: the learning-rate monitor's key stays lr-<optimizer>
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=self.warmup_start_factor,
                                                       end_factor=1.0, total_iters=self.warmup_iters)
            schedulers.append({"scheduler": warmup, "interval": "step", "name": "lr-warmup"})
        if not schedulers:
            return optimizer
        if len(schedulers) == 1:
            return {"optimizer": optimizer, "lr_scheduler": schedulers[0]}
        return [optimizer], schedulers

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before the compiled forward left the module tree hold the weights a
        # second time under "_forward."; the "net." copy is the one that counts
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("_forward.")]:
            del state[key]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the model config travels with the weights: inference and eval rebuild the net from the file alone
        if self.model_config is not None:
            checkpoint[CKPT_KEY] = checkpoint_entry(self.net, self.model_config)
