"""Lazy package fronts: a package's public names, each imported from its module on first use.

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {"coco": ("AnnotationSet", ...), ...})

keeps ``import wholebody.<package>`` (and ``import wholebody.<package>.<light module>``) from loading
what the other modules need (torch, Lightning) until one of their names is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, homes: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` whose names live in its modules as
    ``homes`` says (``{module: (name, ...)}``, module names relative to the package)."""
    where = {name: module for module, names in homes.items() for name in names}
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(names)

    return names, __getattr__, __dir__
