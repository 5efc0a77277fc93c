"""Charts for the statistics page, drawn as inline SVG (no script, no library).

Each function returns one ``<svg>`` element as :class:`~markupsafe.Markup`: bars
with a ``<title>`` (the hover text) and text labels, plus ``role="img"`` and an
``aria-label``, so the numbers are readable without the picture. Colours come
from CSS classes (the stylesheet), never from ``style`` attributes, which the
Content-Security-Policy would refuse.

Invariant: every label and title is escaped here (labels are data: providers,
statuses, dates), so a chart is safe to put into a page as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH = 640
BAR_HEIGHT = 22
LABEL_WIDTH = 170
#: Above this many days the timeline counts by month.
MAX_DAYS = 62
#: The most bars a timeline draws: beyond that many months it counts by year.
MAX_BARS = 120


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'aria-label="{escape(label)}">')
    return Markup(head + f"<title>{escape(label)}</title>" + "".join(body) + "</svg>")


def _empty(label: str) -> Markup:
    return _svg(WIDTH, 40, label, ['<text x="8" y="24" class="chart-note">no data</text>'])


def hbars(items: Sequence[tuple[str, int]], label: str, css: str = "bar") -> Markup:
    """Horizontal bars, one per ``(name, count)``, longest scale = largest count."""
    if not items:
        return _empty(label)
    top = max(n for _, n in items) or 1
    span = WIDTH - LABEL_WIDTH - 70
    body = []
    for i, (name, n) in enumerate(items):
        y = 6 + i * (BAR_HEIGHT + 6)
        w = max(round(span * n / top), 1 if n else 0)
        shown = name if len(name) <= 24 else name[:23] + "…"
        body.append(
            f'<g><title>{escape(name)}: {n:,}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" class="chart-label" '
            f'text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{w}" height="{BAR_HEIGHT}" '
            f'class="{css}"/>'
            f'<text x="{LABEL_WIDTH + w + 6}" y="{y + 15}" class="chart-value">{n:,}</text></g>')
    return _svg(WIDTH, 12 + len(items) * (BAR_HEIGHT + 6), label, body)


def columns(items: Sequence[tuple[str, int]], label: str, css: str = "bar",
            every: int = 1) -> Markup:
    """Vertical bars (a histogram or a time series) with a label under every
    ``every``-th bar and the count above each non-zero bar when there is room."""
    if not items:
        return _empty(label)
    height, bottom, left = 220, 40, 36
    top = max(n for _, n in items) or 1
    slot = (WIDTH - left - 8) / len(items)
    bar = min(max(slot * 0.8, 1.0), 48.0)
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 4}" '
            f'y2="{height - bottom}" class="chart-axis"/>',
            f'<text x="{left - 4}" y="{20}" class="chart-label" text-anchor="end">'
            f'{top:,}</text>',
            f'<text x="{left - 4}" y="{height - bottom}" class="chart-label" '
            f'text-anchor="end">0</text>']
    for i, (name, n) in enumerate(items):
        h = (height - bottom - 24) * n / top
        x = left + i * slot + (slot - bar) / 2
        y = height - bottom - h
        body.append(f'<g><title>{escape(name)}: {n:,}</title>'
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'class="{css}"/>')
        if n and slot >= 22:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" class="chart-value" '
                        f'text-anchor="middle">{n:,}</text>')
        body.append("</g>")
        if i % every == 0:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                        f'class="chart-label" text-anchor="middle">{escape(name)}</text>')
    return _svg(WIDTH, height, label, body)


def histogram(bins: Sequence[int], label: str, *, scale: float, suffix: str = "") -> Markup:
    """Equal-width bins over ``0..scale``: bar *i* counts values in
    ``[i, i+1) * scale / len(bins)`` (the last bin includes ``scale``)."""
    width = scale / len(bins)

    def name(i: int) -> str:
        lo, hi = i * width, (i + 1) * width
        fmt = "{:g}" if scale > 1 else "{:.1f}"
        return f"{fmt.format(lo)}-{fmt.format(hi)}{suffix}"

    return columns([(name(i), n) for i, n in enumerate(bins)], label, css="bar bar-alt")


def timeline(per_day: Sequence[tuple[str, int]], label: str) -> Markup:
    """Sessions per day, every day from the first to the last shown (zeros too);
    per month when that spans more than :data:`MAX_DAYS` days, per year (the newest
    :data:`MAX_BARS`) when more than :data:`MAX_BARS` months."""
    days: dict[date, int] = {}
    for text, n in per_day:
        try:
            days[date.fromisoformat(text)] = days.get(date.fromisoformat(text), 0) + n
        except (TypeError, ValueError):
            continue
    if not days:
        return _empty(label)
    first, last = min(days), max(days)
    if (last - first).days < MAX_DAYS:
        items = [((first + timedelta(d)).isoformat(), days.get(first + timedelta(d), 0))
                 for d in range((last - first).days + 1)]
    elif (last.year - first.year) * 12 + last.month - first.month < MAX_BARS:
        months: dict[str, int] = {}
        y, m = first.year, first.month
        while (y, m) <= (last.year, last.month):
            months[f"{y:04d}-{m:02d}"] = 0
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        for d, n in days.items():
            months[f"{d.year:04d}-{d.month:02d}"] += n
        items = list(months.items())
    else:  # by year, the newest MAX_BARS years
        years = dict.fromkeys(range(max(first.year, last.year - MAX_BARS + 1), last.year + 1), 0)
        for d, n in days.items():
            if d.year in years:
                years[d.year] += n
        items = [(f"{y:04d}", n) for y, n in years.items()]
    every = max(1, len(items) // 8)
    return columns(items, label, every=every)
