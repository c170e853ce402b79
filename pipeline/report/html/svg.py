"""Inline SVG charts for report.html: a histogram of |error| and a reference-vs-output scatter.

Draws a parity `plots` payload (pipeline.plotdata) as plain SVG markup; no scripts, nothing fetched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

from pipeline.report.text import as_float, number

WIDTH, HEIGHT = 460, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 16, 28, 44  # room for tick labels and axis titles
_PLOT_W, _PLOT_H = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
_TICKS = 5  # about this many ticks an axis


def histogram(plots: dict[str, Any]) -> str:
    """Bars of |reference − output| counts over fixed bins from 0 to the largest error."""
    hist = plots.get("histogram") or {}
    counts = [int(c) for c in hist.get("counts") or []]
    high = as_float(hist.get("high")) or 1.0
    if not counts:
        return ""
    # Log heights: int8 errors pile up near 0 while the tail is what a reader needs to see.
    top = math.log10(1 + max(max(counts), 1))
    width = _PLOT_W / len(counts)
    bars = []
    for index, count in enumerate(counts):
        height = _PLOT_H * math.log10(1 + count) / top
        low_edge, high_edge = high * index / len(counts), high * (index + 1) / len(counts)
        tip = f"|error| {number(low_edge)} – {number(high_edge)}: {count} values"
        bars.append(
            f'<rect x="{_LEFT + index * width + 0.5:.1f}" y="{_TOP + _PLOT_H - height:.1f}" '
            f'width="{max(width - 1, 1):.1f}" height="{height:.1f}" fill="#4c78a8"><title>{escape(tip)}</title></rect>'
        )
    title = f"|error| over all {number(plots.get('values'))} values"
    axes = _axes((0.0, high), (0.0, top), "|reference − output|", "values (log scale)", log_y=True)
    return _frame(title, [*axes, *bars])


def scatter(plots: dict[str, Any]) -> str:
    """Output against reference for a sample of values; points off the diagonal are errors."""
    sample = plots.get("sample") or {}
    xs = [v for v in (as_float(x) for x in sample.get("reference") or []) if v is not None]
    ys = [v for v in (as_float(y) for y in sample.get("candidate") or []) if v is not None]
    if not xs or len(xs) != len(ys):
        return ""
    low, high = _span(min(*xs, *ys), max(*xs, *ys))
    to_x = _scale(low, high, _LEFT, _LEFT + _PLOT_W)
    to_y = _scale(low, high, _TOP + _PLOT_H, _TOP)
    diagonal = (
        f'<line x1="{to_x(low):.1f}" y1="{to_y(low):.1f}" x2="{to_x(high):.1f}" y2="{to_y(high):.1f}" '
        'stroke="#9a6700" stroke-dasharray="4 3" stroke-width="1"/>'
    )
    dots = "".join(f'<circle cx="{to_x(x):.1f}" cy="{to_y(y):.1f}" r="1.8"/>' for x, y in zip(xs, ys, strict=True))
    points = f'<g fill="#4c78a8" fill-opacity="0.45">{dots}</g>'
    title = f"output vs reference, {len(xs)} of {number(plots.get('values'))} values (every {sample.get('stride', 1)})"
    axes = _axes((low, high), (low, high), "reference", "output")
    return _frame(title, [*axes, diagonal, points])


def _frame(title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<text x="{_LEFT}" y="16" class="title">{escape(title)}</text>' + "".join(parts) + "</svg>"
    )


def _axes(
    x_range: tuple[float, float], y_range: tuple[float, float], x_title: str, y_title: str, log_y: bool = False
) -> list[str]:
    """Frame, grid, tick labels and axis titles; with `log_y`, y is log10(1 + count) and ticks are powers of ten."""
    to_x = _scale(*x_range, _LEFT, _LEFT + _PLOT_W)
    to_y = _scale(*y_range, _TOP + _PLOT_H, _TOP)
    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" fill="#fff" stroke="#d0d7de"/>']
    for x in nice_ticks(*x_range):
        parts += [
            f'<line x1="{to_x(x):.1f}" y1="{_TOP}" x2="{to_x(x):.1f}" y2="{_TOP + _PLOT_H}" class="grid"/>',
            f'<text x="{to_x(x):.1f}" y="{_TOP + _PLOT_H + 14}" text-anchor="middle">{escape(_tick(x))}</text>',
        ]
    y_ticks = [(math.log10(1 + t), f"{t:,}") for t in _powers_of_ten(y_range[1])] if log_y else None
    for y, label in y_ticks or [(y, _tick(y)) for y in nice_ticks(*y_range)]:
        parts += [
            f'<line x1="{_LEFT}" y1="{to_y(y):.1f}" x2="{_LEFT + _PLOT_W}" y2="{to_y(y):.1f}" class="grid"/>',
            f'<text x="{_LEFT - 5}" y="{to_y(y) + 4:.1f}" text-anchor="end">{escape(label)}</text>',
        ]
    parts += [
        f'<text x="{_LEFT + _PLOT_W / 2}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">{escape(x_title)}</text>',
        f'<text x="14" y="{_TOP + _PLOT_H / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {_TOP + _PLOT_H / 2})">{escape(y_title)}</text>',
    ]
    return parts


def _powers_of_ten(log_top: float) -> list[int]:
    """1, 10, 100, … up to the largest count (given as log10(1 + count)); the floor is 0 anyway."""
    return [10**k for k in range(int(log_top) + 1) if math.log10(1 + 10**k) <= log_top + 1e-9]


def nice_ticks(low: float, high: float) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside [low, high]; about five of them."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low]
    raw = span / _TICKS
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = [(first + i) * step for i in range(int((high - first * step) / step + 1e-9) + 1)]
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]


def _scale(low: float, high: float, start: float, end: float) -> Callable[[float], float]:
    span = high - low or 1.0
    return lambda value: start + (value - low) / span * (end - start)


def _span(low: float, high: float) -> tuple[float, float]:
    """A little margin, and a non-empty range when every value is the same."""
    if high == low:
        return low - 1.0, high + 1.0
    pad = (high - low) * 0.04
    return low - pad, high + pad


def _tick(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"
