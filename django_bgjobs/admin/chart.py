"""The dashboard's history chart, laid out in Python and drawn as inline SVG by a template.

No JavaScript and nothing fetched from a CDN, so the admin works offline; colours come
from the admin's CSS variables (in the template), so dark mode needs nothing extra.
"""

import math

WIDTH = 760
HEIGHT = 220
MARGIN_LEFT = 52
MARGIN_RIGHT = 8
MARGIN_TOP = 12
MARGIN_BOTTOM = 30
GRID_LINES = 4


def nice_ceiling(value):
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= ``value`` (10 for 0), for the y-axis top."""
    if value <= 0:
        return 10
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            top = step * magnitude
            return int(top) if top == int(top) else top
    return 10 * magnitude  # pragma: no cover - the loop always returns


def history_chart(history):
    """Geometry of a grouped bar chart of ``Stats.history()`` rows ``(date, processed, failed)``.

    Returns a dict the template draws (coordinates are strings, so the template's number
    localization cannot turn ``12.5`` into ``12,5``): ``bars`` (x, y, width, height, css class, tooltip),
    ``grid`` (y and label of each horizontal line), ``labels`` (x and text of some days),
    and the totals.  Days run oldest to newest, left to right.
    """
    days = sorted(history, key=lambda row: row[0])
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    top = nice_ceiling(max([max(p, f) for _, p, f in days] or [0]))
    slot = plot_w / max(len(days), 1)
    bar_w = slot * 0.36

    def y_of(value):
        return MARGIN_TOP + plot_h - plot_h * value / top

    bars, labels = [], []
    for index, (day, processed, failed) in enumerate(days):
        x = MARGIN_LEFT + index * slot + slot * 0.12
        tooltip = f"{day:%a %d %b %Y}: {processed:,} processed, {failed:,} failed"
        for offset, value, css in ((0, processed, "processed"), (bar_w, failed, "failed")):
            height = max(plot_h * value / top, 1 if value else 0)
            bars.append({
                "x": _n(x + offset), "y": _n(MARGIN_TOP + plot_h - height),
                "width": _n(bar_w), "height": _n(height), "css": css, "title": tooltip,
            })
        if index % 5 == 0 or index == len(days) - 1:
            labels.append({"x": _n(MARGIN_LEFT + (index + 0.5) * slot), "text": f"{day:%b} {day.day}"})
    grid = []
    for step in range(GRID_LINES + 1):
        value = top * step / GRID_LINES
        grid.append({"y": _n(y_of(value)), "label": _short_number(value)})
    return {
        "width": _n(WIDTH), "height": _n(HEIGHT), "left": _n(MARGIN_LEFT), "right": _n(WIDTH - MARGIN_RIGHT),
        "tick_x": _n(MARGIN_LEFT - 6), "baseline": _n(MARGIN_TOP + plot_h), "label_y": _n(HEIGHT - 10),
        "bars": bars, "grid": grid, "labels": labels,
        "days": days[::-1],  # newest first, for the table under the chart
        "total_processed": sum(p for _, p, _ in days), "total_failed": sum(f for _, _, f in days),
    }


def _n(value):
    """A coordinate as SVG wants it: a string with a dot, whatever the site's locale."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _short_number(value):
    """``950`` -> ``"950"``, ``12500`` -> ``"12.5k"``, ``3000000`` -> ``"3M"``."""
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))
