"""Charts drawn on the server as SVG: people would rather look than read, and a page that draws
its own chart needs no script and no library in the browser."""

from __future__ import annotations

from datetime import datetime, timedelta
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1440, 260, 48, 28, 12


def day_bounds(tz: ZoneInfo, now: float) -> tuple[float, float]:
    """The venue's day around ``now``: its local midnight and the next (23 or 25 hours apart on
    the days the clocks change)."""
    local = datetime.fromtimestamp(now, tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), end.timestamp()


def entries_per_minute_svg(per_minute: list[int], start: float, tz: ZoneInfo, now: float) -> str:
    """Entries per minute over the day: a bar per minute with entries, hour marks every three hours,
    a line at now; its title says the total and the busiest minute (for screen readers too)."""
    n = len(per_minute)
    peak = max(per_minute, default=0)
    top = max(peak, 1)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP

    def x(minute: float) -> float:
        return LEFT + minute * plot_w / n

    def y(count: int) -> float:
        return TOP + plot_h - count * plot_h / top

    bars = " ".join(f"M{x(m) + 0.5:.1f} {y(0):.1f}V{y(c):.1f}" for m, c in enumerate(per_minute) if c)
    total = sum(per_minute)
    when = ""
    if peak:
        busiest = per_minute.index(peak)
        when = f"; busiest {datetime.fromtimestamp(start + busiest * 60, tz):%H:%M} with {peak}"
    title = f"Entries per minute today: {total} in all{when}"
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
             f'data-total="{total}" data-peak="{peak}">',
             f'<title id="chart-title">{escape(title)}</title>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#f8fafc" '
             'stroke="#d9dce3"/>']
    for hours in range(0, 25, 3):
        minute = hours * 60
        if minute > n:
            break
        label = datetime.fromtimestamp(start + minute * 60, tz).strftime("%H:%M")
        parts.append(f'<line x1="{x(minute):.1f}" x2="{x(minute):.1f}" y1="{TOP}" y2="{y(0) + 6:.1f}" '
                     'stroke="#d9dce3"/>')
        anchor = "end" if minute + 60 > n else "middle"  # the day's last mark stays inside
        parts.append(f'<text x="{x(minute):.1f}" y="{HEIGHT - 6}" font-size="16" text-anchor="{anchor}" '
                     f'fill="#5b6270">{label}</text>')
    for count in sorted({0, top}):
        parts.append(f'<text x="{LEFT - 8}" y="{y(count) + 5:.1f}" font-size="16" text-anchor="end" '
                     f'fill="#5b6270">{count}</text>')
    if bars:
        width = max(2.0, plot_w / n)  # a minute is under a pixel wide: a bar of two, to be seen
        parts.append(f'<path d="{bars}" stroke="#0b5cad" stroke-width="{width:.2f}" fill="none"/>')
    minute_now = (now - start) / 60
    if 0 <= minute_now <= n:
        parts.append(f'<line x1="{x(minute_now):.1f}" x2="{x(minute_now):.1f}" y1="{TOP}" y2="{y(0):.1f}" '
                     'stroke="#b4121f" stroke-dasharray="4 4"/>')
    parts.append("</svg>")
    return "".join(parts)
