"""Small SVG charts drawn on the server: numbers in, SVG path data out (no chart library).

A sparkline is one path; the lot chart adds a filled area, a capacity line and axis labels.
Missing points (None: no reading yet) break the line instead of drawing a false zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


def _path(xs: list[float], ys: list[float | None]) -> str:
    parts: list[str] = []
    pen_up = True
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            pen_up = True
            continue
        parts.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
        pen_up = False
    return "".join(parts)


def sparkline(values: list[int | None], top: int | None, width: int = 120, height: int = 28) -> str:
    """Path data for `values` in a `width` x `height` box; `top` is the scale's maximum."""
    if not values:
        return ""
    high = max([v for v in values if v is not None] + [top or 0, 1])
    step = width / max(len(values) - 1, 1)
    xs = [i * step for i in range(len(values))]
    ys = [None if v is None else height - 1 - (height - 2) * v / high for v in values]
    return _path(xs, ys)


@dataclass(frozen=True)
class Chart:
    """Everything the lot page's SVG needs, already scaled."""

    width: int
    height: int
    line: str
    area: str
    capacity_y: float | None
    y_labels: list[tuple[float, int]]  # (y, value)
    x_labels: list[tuple[float, str, str]]  # (x, text, text-anchor)
    peak: int | None
    empty: bool


def chart(times: list[int], values: list[int | None], capacity: int | None, span_s: int) -> Chart:
    """The lot chart: 720 x 240 user units with 40 on the left and 20 below for labels."""
    width, height, left, bottom = 720, 240, 40, 20
    known = [v for v in values if v is not None]
    high = max([*known, capacity or 0, 1])
    high = int(high * 1.1) + 1
    plot_w, plot_h = width - left - 8, height - bottom - 8

    def y_of(v: float) -> float:
        return 8 + plot_h - plot_h * v / high

    step = plot_w / max(len(times) - 1, 1)
    xs = [left + i * step for i in range(len(times))]
    ys = [None if v is None else y_of(v) for v in values]
    line = _path(xs, ys)
    area = ""
    if known:
        first = next(i for i, y in enumerate(ys) if y is not None)
        last = max(i for i, y in enumerate(ys) if y is not None)
        filled = [y if y is not None else y_of(0) for y in ys[first : last + 1]]
        area = (
            _path(xs[first : last + 1], list(filled))
            + f"L{xs[last]:.1f},{y_of(0):.1f}L{xs[first]:.1f},{y_of(0):.1f}Z"
        )
    y_labels = [(y_of(v), v) for v in sorted({0, high // 2, high})]
    fmt = "%H:%M" if span_s <= 86400 else "%d %b"
    # Six labels, the last one ending at the right edge instead of running past it.
    every = max(len(times) // 6, 1)
    x_labels = [
        (xs[i], time.strftime(fmt, time.gmtime(times[i])), "middle")
        for i in range(0, len(times) - every // 2, every)
    ]
    if times:
        x_labels.append((xs[-1], time.strftime(fmt, time.gmtime(times[-1])), "end"))
    return Chart(
        width,
        height,
        line,
        area,
        y_of(capacity) if capacity else None,
        y_labels,
        x_labels,
        max(known) if known else None,
        not known,
    )
