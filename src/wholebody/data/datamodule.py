"""WholeBodyDataModule: COCO-WholeBody (or the synthetic set) as Lightning dataloaders.

``root`` holds COCO's layout::

    root/annotations/coco_wholebody_train_v1.0.json   root/train2017/*.jpg
    root/annotations/coco_wholebody_val_v1.0.json     root/val2017/*.jpg

With ``synthetic`` set (``data=synthetic``), :meth:`prepare_data` renders that layout into ``root``
when it is absent or was generated with other settings.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from wholebody.cocowb import WholeBodyColumns
from wholebody.data.coco import AnnotationSet, PersonRecord, PersonTable, load_coco_wholebody, load_detections
from wholebody.data.dataset import TopDownDataset, seed_worker
from wholebody.data.synthetic import generate_synthetic, synthetic_is_current
from wholebody.data.transforms import AugmentConfig

log = logging.getLogger(__name__)


class MissingImagesError(FileNotFoundError):
    """Image files named by an annotation file are absent."""


def check_image_files(records: PersonTable | Sequence[PersonRecord], ann_file: str,
                      skip_missing: bool = False) -> PersonTable | list[PersonRecord]:
    """Check that every person's image exists (each image file is looked at once).

    Returns the persons (as given: a table or a list) whose image exists.

    Raises:
        MissingImagesError: listing how many are missing and the first few paths (unless
            ``skip_missing``, which drops their persons with a logged count instead).
    """
    table = records if isinstance(records, PersonTable) else PersonTable.from_records(records)
    used, paths = table.unique_paths()
    gone = np.array([not os.path.isfile(p) for p in paths], bool).reshape(-1)
    if not gone.any():
        return records if isinstance(records, PersonTable) else list(records)
    missing = sorted(p for p, g in zip(paths, gone) if g)
    if not skip_missing:
        first = "\n  ".join(missing[:5])
        raise MissingImagesError(
            f"{len(missing)} of {len(paths)} images named by {ann_file} are missing, e.g.\n  {first}\n"
            "(check data.root and the image folders; data.skip_missing_images=true drops their persons instead)"
        )
    keep = ~np.isin(table.image_index, used[gone])
    log.warning("%s: %d of %d images are missing; dropped their %d persons", ann_file, len(missing), len(paths),
                int((~keep).sum()))
    if isinstance(records, PersonTable):
        return records.take(keep)
    return [r for r, k in zip(records, keep) if k]


class WholeBodyDataModule(L.LightningDataModule):
    """Top-down COCO-WholeBody data.

    Args:
        root: data folder (COCO layout above).
        input_size: (W, H) of the crops, default (288, 384).
        batch_size / val_batch_size: per-step batch sizes (val defaults to ``batch_size``).
        num_workers, pin_memory, persistent_workers (used when ``num_workers > 0``), drop_last (train).
        val_num_workers: loader workers of validation and test (None: ``num_workers``).
        val_persistent_workers: keep them alive between validations (default False: validation runs
            every few epochs, and idle workers would hold their memory through the training epochs).
        train_ann, val_ann, test_ann: annotation files relative to ``root`` (test defaults to val).
        train_images, val_images, test_images: image folders relative to ``root``.
        val_boxes: a COCO ``bbox`` results file of detected persons for val/test (default: GT
            boxes); ``det_score_thr`` filters it.
        padding: person box -> crop region growth factor.
        augment: :class:`AugmentConfig` fields for training crops.
        photometric: pixel-level albumentations transform(s) for training crops, or None.
        skip_missing_images: drop persons whose image is missing (counted) instead of failing.
        cache_dir: folder of the column cache the annotation files are converted into once
            (:mod:`wholebody.column_cache`; built in :meth:`prepare_data`, mapped by every rank and worker);
            None: ``$WHOLEBODY_CACHE``, else ``$XDG_CACHE_HOME/wholebody`` (``~/.cache/wholebody``).
        synthetic: settings of the synthetic set (``images``, ``val_images``, ``seed``, ``workers`` and
            :class:`~wholebody.data.synthetic.SynthConfig` knobs or ``preset``); generated in
            :meth:`prepare_data`.
        seed: augmentation seed for loading in the main process (workers are seeded by torch).
    """

    def __init__(
        self,
        root: str,
        input_size: Sequence[int] = (288, 384),
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        val_num_workers: int | None = None,
        val_persistent_workers: bool = False,
        train_ann: str = "annotations/coco_wholebody_train_v1.0.json",
        val_ann: str = "annotations/coco_wholebody_val_v1.0.json",
        test_ann: str | None = None,
        train_images: str = "train2017",
        val_images: str = "val2017",
        test_images: str | None = None,
        val_boxes: str | None = None,
        det_score_thr: float = 0.0,
        padding: float = 1.25,
        augment: AugmentConfig | Mapping | None = None,
        photometric=None,
        skip_missing_images: bool = False,
        cache_dir: str | None = None,
        synthetic: Mapping | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["photometric"])
        self.root = Path(root).expanduser()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.val_num_workers = int(num_workers if val_num_workers is None else val_num_workers)
        self.val_persistent_workers = bool(val_persistent_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.drop_last = bool(drop_last)
        self.train_ann_file = self.root / train_ann
        self.val_ann_file = self.root / val_ann
        self.test_ann_file = self.root / (test_ann or val_ann)
        self.train_image_dir = self.root / train_images
        self.val_image_dir = self.root / val_images
        self.test_image_dir = self.root / (test_images or val_images)
        self.val_boxes = Path(val_boxes).expanduser() if val_boxes else None
        self.det_score_thr = float(det_score_thr)
        self.padding = float(padding)
        self.augment = AugmentConfig.from_any(augment)
        self.photometric = photometric
        self.skip_missing_images = bool(skip_missing_images)
        from wholebody.column_cache import default_cache_dir

        self.cache_dir = default_cache_dir(cache_dir or None)
        self.synthetic = dict(synthetic) if synthetic is not None else None
        self.seed = int(seed)
        self.load_stats: dict[str, object] = {}
        self.train_set: TopDownDataset | None = None
        self.val_set: TopDownDataset | None = None
        self.test_set: TopDownDataset | None = None
        self.train_persons: PersonTable | None = None
        self.val_persons: PersonTable | None = None
        self.test_persons: PersonTable | None = None
        self._loaded: list[AnnotationSet] = []

    # ------------------------------------------------------------------ preparation
    def _synth_args(self) -> tuple[int, int, int, int, dict]:
        s = dict(self.synthetic)
        images, val_images = int(s.pop("images", 1000)), int(s.pop("val_images", 100))
        seed, workers = int(s.pop("seed", 0)), int(s.pop("workers", 1))
        return images, val_images, seed, workers, s

    def prepare_data(self) -> None:
        """Render the synthetic set into ``root`` when configured and not already there; convert the
        annotation files into the column cache (once; Lightning runs this on one process per node, before
        the others map the cache in :meth:`setup`)."""
        self._prepare_synthetic()
        from wholebody.column_cache import cached_columns

        for f in dict.fromkeys((self.train_ann_file, self.val_ann_file, self.test_ann_file)):
            if f.is_file():
                cached_columns(f, self.cache_dir)

    def _prepare_synthetic(self) -> None:
        if self.synthetic is None:
            return
        images, val_images, seed, workers, knobs = self._synth_args()
        if synthetic_is_current(self.root, images, val_images, seed, knobs):
            log.info("synthetic set in %s is current; reusing it", self.root)
            return
        if self.root.exists() and any(self.root.iterdir()) and not (self.root / "synthetic.json").exists():
            raise FileExistsError(f"{self.root} is not empty and holds no synthetic set; refusing to write into it "
                                  "(choose another data.root)")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.root.name}.", dir=self.root.parent))
        try:
            generate_synthetic(tmp, images=images, val_images=val_images, seed=seed, config=knobs, workers=workers)
            if self.root.exists():
                old = self.root.with_name(f".{self.root.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                self.root.rename(old)
                tmp.rename(self.root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(self.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ setup
    def _load(self, name: str, ann_file: Path, image_dir: Path) -> AnnotationSet:
        if not ann_file.is_file():
            hint = " (data=synthetic generates it in prepare_data)" if self.synthetic is not None else (
                f"; expected COCO's layout under {self.root}: annotations/, train2017/, val2017/")
            raise FileNotFoundError(f"annotation file {ann_file} not found{hint}")
        ann = load_coco_wholebody(ann_file, image_dir, cache_dir=self.cache_dir)
        self.load_stats[name] = ann.stats
        self._loaded.append(ann)
        return ann

    def image_path(self, image_id: int) -> str:
        """Path of the image ``image_id`` of any split loaded by :meth:`setup`."""
        for ann in self._loaded:
            c = ann.columns
            j = np.flatnonzero(c.image_ids == int(image_id))
            if j.size:
                return os.path.join(ann.image_dir, c.file_name(int(j[0])))
        raise KeyError(f"image id {image_id} is not in the loaded annotation files (did setup() run?)")

    def loaded_columns(self, ann_file: str | os.PathLike) -> WholeBodyColumns | None:
        """The columns of ``ann_file`` if :meth:`setup` loaded it (mapped from the cache), else None."""
        want = Path(ann_file).resolve()
        for ann in self._loaded:
            if Path(ann.ann_file).resolve() == want:
                return ann.columns
        return None

    @property
    def train_records(self) -> list[PersonRecord]:
        """The training persons as records (built on each call; for small sets and tests)."""
        return [] if self.train_persons is None else self.train_persons.records()

    @property
    def val_records(self) -> list[PersonRecord]:
        """The validation persons as records (built on each call; for small sets and tests)."""
        return [] if self.val_persons is None else self.val_persons.records()

    def _eval_persons(self, name: str, ann_file: Path, image_dir: Path) -> PersonTable:
        ann = self._load(name, ann_file, image_dir)
        persons = ann.persons
        if self.val_boxes is not None:
            persons, stats = load_detections(self.val_boxes, ann, score_thr=self.det_score_thr)
            self.load_stats[f"{name}_boxes"] = stats
        return check_image_files(persons, str(ann_file), self.skip_missing_images)

    def _eval_set(self, records: PersonTable) -> TopDownDataset:
        return TopDownDataset(records, self.input_size, train=False, padding=self.padding,
                              on_bad_image="raise", seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            ann = self._load("train", self.train_ann_file, self.train_image_dir)
            self.train_persons = check_image_files(ann.persons, str(self.train_ann_file), self.skip_missing_images)
            self.train_set = TopDownDataset(
                self.train_persons, self.input_size, train=True, augment=self.augment, photometric=self.photometric,
                padding=self.padding, on_bad_image="replace", seed=self.seed,
            )
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_persons = self._eval_persons("val", self.val_ann_file, self.val_image_dir)
            self.val_set = self._eval_set(self.val_persons)
        if stage in (None, "test") and self.test_set is None:
            self.test_persons = self._eval_persons("test", self.test_ann_file, self.test_image_dir)
            self.test_set = self._eval_set(self.test_persons)

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds: TopDownDataset | None, batch_size: int, train: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        workers = self.num_workers if train else self.val_num_workers
        persistent = self.persistent_workers if train else self.val_persistent_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=train,
            drop_last=self.drop_last and train,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=persistent and workers > 0,
            worker_init_fn=seed_worker if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.val_batch_size, train=False)
