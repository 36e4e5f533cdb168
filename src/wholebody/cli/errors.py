"""One-line errors for the command-line tools: expected problems exit with status 2 and a message,
never a traceback (set ``HYDRA_FULL_ERROR=1`` or ``WHOLEBODY_DEBUG=1`` to see one)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _expected() -> tuple[type[BaseException], ...]:
    from wholebody.training.module import NonFiniteLossError
    from wholebody.training.run import ConfigError

    kinds: list[type[BaseException]] = [ConfigError, NonFiniteLossError, FileNotFoundError]
    try:
        from wholebody.data.coco import AnnotationError

        kinds.append(AnnotationError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def run_or_exit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; on an expected error print ``error: <message>`` to stderr and exit with status 2."""
    try:
        return fn(*args, **kwargs)
    except _expected() as e:
        if os.environ.get("WHOLEBODY_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
