"""One-line errors for the command-line tools: expected problems (a user can fix them) exit with status 2
and an ``error: <message>`` line, never a traceback (``WHOLEBODY_DEBUG=1`` re-raises with one)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
#: OS errors that are a property of the output folder, not a bug: reported in one line.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG})


def expected_errors() -> tuple[type[BaseException], ...]:
    """The error types every command reports in one line."""
    from wholebody.column_cache import CacheError, CorruptCacheError
    from wholebody.data.coco import AnnotationError
    from wholebody.images import ImageReadError
    from wholebody.inference.checkpoint import InferenceError
    from wholebody.training.module import NonFiniteLossError
    from wholebody.training.run import ConfigError

    return (ConfigError, NonFiniteLossError, InferenceError, AnnotationError, ImageReadError, FileNotFoundError,
            CacheError, CorruptCacheError)


def run_or_exit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; on an expected error print ``error: <message>`` to stderr and exit with status 2."""
    try:
        return fn(*args, **kwargs)
    except expected_errors() as e:
        if os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a full disk, a quota, a read-only folder: the user's to fix, in one line
        if e.errno not in DISK_ERRNOS or os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def one_line(e: BaseException) -> str:
    """The message of ``e`` in one line. An error re-raised from a DataLoader worker carries the worker's
    whole traceback ("Caught X in DataLoader worker process N. Original Traceback ..."): its last line,
    ``module.X: message``, holds the original message."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("Caught ") and any(ln.startswith("Original Traceback") for ln in lines):
        name, sep, message = lines[-1].partition(": ")
        return message if sep else lines[-1]
    return lines[0]
