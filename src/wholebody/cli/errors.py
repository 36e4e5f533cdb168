"""One-line errors for the command-line tools: expected problems (a user can fix them) exit with status 2
and an ``error: <message>`` line, never a traceback (``WHOLEBODY_DEBUG=1`` re-raises with one)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def expected_errors() -> tuple[type[BaseException], ...]:
    """The error types every command reports in one line."""
    from wholebody.data.coco import AnnotationError
    from wholebody.data.dataset import ImageReadError
    from wholebody.inference.checkpoint import InferenceError
    from wholebody.training.module import NonFiniteLossError
    from wholebody.training.run import ConfigError

    return (ConfigError, NonFiniteLossError, InferenceError, AnnotationError, ImageReadError, FileNotFoundError)


def run_or_exit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; on an expected error print ``error: <message>`` to stderr and exit with status 2."""
    try:
        return fn(*args, **kwargs)
    except expected_errors() as e:
        if os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
