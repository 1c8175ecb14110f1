"""Charts drawn on the server as inline SVG: no script, nothing fetched from the internet.

Every text that reaches the SVG (model names above all) goes through Django's escaping.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe palette (Okabe & Ito), one colour per model.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STATE_COLORS = {"up": "#1e8e3e", "flapping": "#f9ab00", "down": "#d93025", "none": "#e8eaed"}

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 26


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    values: Sequence[float | None]


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def line_chart(
    *,
    title: str,
    series: Sequence[Series],
    starts: Sequence[datetime],
    value_format: Callable[[float], str],
    minimum_top: float = 0.0,
) -> SafeString:
    """One line per series over time; gaps (None) break the line."""
    count = len(starts)
    top = max([minimum_top, *(value for line in series for value in line.values if value is not None)])
    top = _nice_ceiling(top) if top > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        format_html(
            '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
            'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
            title,
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
        ),
        format_html("<title>{}</title>", title),
    ]
    for fraction in (0, 0.5, 1):
        level = y(top * fraction)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#dadce0"/>', LEFT, WIDTH - RIGHT, _n(level), _n(level)
            )
        )
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" fill="#5f6368">{}</text>',
                LEFT - 6,
                _n(level + 4),
                value_format(top * fraction),
            )
        )
    for index in sorted({0, count // 2, count - 1}) if count else ():
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" fill="#5f6368">{}</text>',
                _n(x(index)),
                HEIGHT - 8,
                f"{starts[index]:%H:%M}",
            )
        )
    for line in series:
        for run in _runs(line.values):
            if len(run) == 1:
                index, value = run[0]
                parts.append(
                    format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', _n(x(index)), _n(y(value)), line.color)
                )
            else:
                points = " ".join(f"{x(index):.1f},{y(value):.1f}" for index, value in run)
                parts.append(
                    format_html(
                        '<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"/>', points, line.color
                    )
                )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def timeline(
    *, states: Sequence[str], starts: Sequence[datetime], label: str, width: int = WIDTH, height: int = 18
) -> SafeString:
    """A strip of coloured cells, one per bucket: up, flapping, down, or nothing seen."""
    count = max(len(states), 1)
    cell = width / count
    parts = [
        format_html(
            # Stretched to its column's width: the cells are a strip, their proportions do not matter.
            '<svg class="timeline" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
            'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
            label,
            width,
            height,
            width,
            height,
        )
    ]
    for index, state in enumerate(states):
        parts.append(
            format_html(
                '<rect x="{}" y="0" width="{}" height="{}" fill="{}"><title>{} {}</title></rect>',
                _n(index * cell),
                _n(cell + 0.3),
                height,
                STATE_COLORS[state],
                f"{starts[index]:%H:%M}",
                state,
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def legend(series: Sequence[Series]) -> SafeString:
    return mark_safe(
        "".join(
            format_html(
                '<span class="legend-item"><span class="swatch" style="background:{}"></span>{}</span>',
                line.color,
                line.label,
            )
            for line in series
        )
    )


def _n(number: float) -> str:
    return f"{number:.1f}"


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    runs, current = [], []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index, value))
    if current:
        runs.append(current)
    return runs


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value``."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power
