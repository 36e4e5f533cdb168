"""A checkpoint that has memorised a few synthetic images, made in seconds on a CPU.

Tests, notebooks and examples need a network whose heatmaps have real peaks (an untrained one gives
flat noise: its keypoints are meaningless, its part boxes ill-defined). :func:`memorised_checkpoint`
renders a handful of synthetic images, fits ``zoomnet_tiny`` to their persons for a few dozen steps
(one batch of every person, Adam) and writes a normal checkpoint. On those images its predictions
are close to the ground truth; anywhere else they are meaningless. It shows the machinery working,
it is not a model: ``make demo`` trains a real (small) one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from wholebody.inference.checkpoint import build_net, load_model_config, write_checkpoint


@dataclass(frozen=True)
class MemorisedModel:
    """The checkpoint and the images (with their COCO-WholeBody annotation file) it has memorised."""

    ckpt: Path
    ann_file: Path
    image_dir: Path
    final_loss: float


def memorised_checkpoint(
    out_dir: str | Path, *, images: int = 3, steps: int = 60, lr: float = 5e-3, seed: int = 0,
    model: str = "zoomnet_tiny", reuse: bool = True,
) -> MemorisedModel:
    """Render ``images`` synthetic images (demo preset) into ``out_dir/data``, fit ``model`` to their
    persons for ``steps`` steps, write ``out_dir/memorised.ckpt`` (and ``memorised.json``, its settings).
    Deterministic for a seed; the global random state is left as it was. With ``reuse``, a checkpoint
    that ``out_dir`` already holds for the same settings is returned as it is."""
    import orjson
    from hydra.utils import instantiate
    from torch.utils.data import default_collate

    from wholebody.data.coco import load_coco_wholebody
    from wholebody.data.dataset import TopDownDataset
    from wholebody.data.synthetic import generate_synthetic
    from wholebody.io_utils import write_json_atomic

    out = Path(out_dir)
    data = out / "data"
    settings = {"images": images, "steps": steps, "lr": lr, "seed": seed, "model": model}
    marker = out / "memorised.json"
    if reuse and marker.is_file() and (out / "memorised.ckpt").is_file():
        done = orjson.loads(marker.read_bytes())
        if done.get("settings") == settings:
            return MemorisedModel(out / "memorised.ckpt", Path(done["ann_file"]), Path(done["image_dir"]),
                                  float(done["final_loss"]))
    split = generate_synthetic(data, images=0, val_images=images, seed=seed, config={"preset": "demo"})
    ann = load_coco_wholebody(split["val"], data / "val2017")
    mc = load_model_config(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_net(mc)
        loss_fn = instantiate(mc["loss"])
        ds = TopDownDataset(ann.persons, input_size=mc["input_size"])
        batch = default_collate([ds[i] for i in range(len(ds))])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        for _ in range(steps):
            outputs = net(batch["image"], part_boxes=batch["part_boxes"], part_valid=batch["part_valid"])
            loss = loss_fn(outputs, batch)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    ckpt = write_checkpoint(net, out / "memorised.ckpt", mc)
    result = MemorisedModel(ckpt=ckpt, ann_file=Path(split["val"]), image_dir=data / "val2017",
                            final_loss=float(loss.detach()))
    write_json_atomic(marker, {"settings": settings, "ann_file": str(result.ann_file), "image_dir": str(result.image_dir),
                               "final_loss": result.final_loss})
    return result
