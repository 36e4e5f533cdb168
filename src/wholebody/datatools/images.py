"""Reading dataset images in bulk: one job per image, a process pool, a progress bar, and a list of
the images that could not be used (reported at the end, never a crash half-way)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wholebody.images import ImageReadError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class SkippedImage:
    file: str
    reason: str


def check_image_dir(image_dir: str | Path) -> Path:
    """The image folder must exist and hold at least one image file."""
    d = Path(image_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder not found: {d}")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir()):
        raise FileNotFoundError(f"image folder {d} is empty (no {'/'.join(IMAGE_SUFFIXES)} files)")
    return d


def _call(fn: Callable[[Any], Any], job: Any) -> tuple[bool, Any]:
    try:
        return True, fn(job)
    except ImageReadError as e:
        return False, e.reason


def run_image_jobs(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    names: Sequence[str],
    workers: int = 0,
    desc: str = "images",
    progress: bool | None = None,
) -> tuple[list[Any], list[SkippedImage]]:
    """Run ``fn(job)`` for every job (one image each), in ``workers`` processes (0 or 1: in this one).

    ``fn`` must be a picklable top-level function; it raises :class:`ImageReadError` for an image it
    cannot use, which is logged, skipped and returned in the skip list (``names[i]`` names job i).
    Returns the results of the jobs that succeeded (in job order) and the skipped images.
    """
    from tqdm.auto import tqdm

    results: list[Any] = []
    skipped: list[SkippedImage] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=None if progress is None else not progress)

    def collect(outcomes: Iterable[tuple[bool, Any]]) -> None:
        for name, (ok, value) in zip(names, outcomes):
            if ok:
                results.append(value)
            else:
                log.warning("skipping %s: %s", name, value)
                skipped.append(SkippedImage(name, value))
            bar.update(1)

    try:
        if workers <= 1 or len(jobs) <= 1:
            collect(_call(fn, job) for job in jobs)
        else:
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                collect(pool.map(_call, [fn] * len(jobs), jobs, chunksize=chunk))
    finally:
        bar.close()
    return results, skipped
