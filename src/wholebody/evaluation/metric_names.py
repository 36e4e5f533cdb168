"""The project's metric names: ``<prefix>/<part>/<stat>``, e.g. ``val/wholebody/AP`` (what the
training loggers record, ModelCheckpoint monitors and sweepers optimise). The one place that spells them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def metric_name(part: str, stat: str, prefix: str = "val") -> str:
    """``"val/body/AP"`` for ``("body", "AP")``."""
    return f"{prefix}/{part}/{stat}"


def metric_dict(
    stats: Mapping[str, Mapping[str, float]], prefix: str = "val", names: Iterable[str] = ("AP", "AR")
) -> dict[str, float]:
    """Flat logging names: ``{"val/body/AP": ..., "val/body/AR": ..., ...}`` (the project's metric names)."""
    names = tuple(names)
    return {metric_name(part, n, prefix): float(v[n]) for part, v in stats.items() for n in names}


__all__ = ["metric_dict", "metric_name"]
