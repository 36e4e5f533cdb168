"""The fixed-width text table of evaluation stats (``wholebody-eval``, the end of a training run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_value(v: float) -> str:
    """A stat in six characters; ``n/a`` for -1 (no ground truth to measure)."""
    return "   n/a" if v < 0 else f"{v:6.3f}"


def format_table(stats: Mapping[str, Mapping[str, float]], names: Sequence[str], first: str = "part") -> str:
    """Fixed-width text table: one row per key of ``stats``, one column per name."""
    lines = [f"{first:<10}" + "".join(f"{n:>7}" for n in names)]
    for row, vals in stats.items():
        lines.append(f"{row:<10}" + "".join(" " + format_value(vals[n]) for n in names))
    return "\n".join(lines)


__all__ = ["format_table", "format_value"]
