"""The reference the evaluator is checked against: xtcocotools' COCOeval, run as mmpose runs it.

xtcocotools is not a dependency of the package: the parity tests and ``make bench-eval`` use it when
it is installed (``make install`` builds it from source). This module holds the one definition of
that reference run (:func:`reference_stats`) and tells the three states of the installation apart
(:func:`reference_status`): ``"ok"``; ``"absent"`` (not installed: the tests compare with pinned
numbers); ``"broken"`` (installed but not importable, typically a wheel built against another numpy
major version, reused from pip's cache; "numpy.dtype size changed"): a clear message saying how to
rebuild it, never a silent skip.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

from wholebody.evaluation.engine import STAT_NAMES
from wholebody.keypoints import COCO_WHOLEBODY, EVAL_PARTS

#: How to rebuild the reference against the numpy of this environment.
REBUILD = ("python -m pip install --force-reinstall --no-deps --no-cache-dir --no-build-isolation "
           "--no-binary xtcocotools xtcocotools")


def reference_status() -> tuple[str, str]:
    """(``"ok"`` | ``"absent"`` | ``"broken"``, a one-line explanation)."""
    try:
        from xtcocotools.coco import COCO  # noqa: F401
        from xtcocotools.cocoeval import COCOeval  # noqa: F401
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] == "xtcocotools":
            return "absent", "xtcocotools is not installed (parity is checked against pinned reference numbers)"
        return "broken", f"xtcocotools is installed but does not import ({e}); rebuild it: {REBUILD}"
    except Exception as e:  # noqa: BLE001 - ABI mismatch (ValueError), ImportError of its extension, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return "broken", f"xtcocotools is installed but does not import ({type(e).__name__}: {first}); rebuild it: {REBUILD}"
    return "ok", "xtcocotools imports"


def reference_stats(gt_path: str | Path, results_path: str | Path, parts: Sequence[str] = EVAL_PARTS,
                    image_ids: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """The xtcocotools evaluations of a ground-truth file and a results file, as mmpose's
    CocoWholeBodyMetric runs them: per part its slice of the sigmas, ``use_area=True``, ``useSegm=None``.

    Returns ``{part: {stat name: value}}`` in :data:`STAT_NAMES` order. ``image_ids`` restricts the
    evaluation (``params.imgIds``). Raises ``ImportError`` with :data:`REBUILD` when xtcocotools is
    absent or broken.
    """
    state, why = reference_status()
    if state != "ok":
        raise ImportError(why)
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    out: dict[str, dict[str, float]] = {}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = COCO(str(gt_path))
        det = coco.loadRes(str(results_path))
        for part in parts:
            iou_type = "keypoints_body" if part == "body" else f"keypoints_{part}"
            ev = COCOeval(coco, det, iou_type, COCO_WHOLEBODY.part_sigmas(part), use_area=True)
            ev.params.useSegm = None
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = dict(zip(STAT_NAMES, map(float, ev.stats)))
    return out


def main() -> int:
    """``python -m wholebody.evaluation.reference``: print the state; exit status 1 only when broken."""
    state, why = reference_status()
    print(f"xtcocotools: {why}")
    return 1 if state == "broken" else 0


if __name__ == "__main__":
    raise SystemExit(main())
