"""An activity chart (runs and failures per time bucket) as inline SVG, rendered on the server.

No chart library and no script: the page stays light, works without JavaScript and with no network
access, and screen readers get a text summary (``<title>``/``<desc>``) plus one tooltip per bar.
Charts are cached per function and minute (:func:`chart_cache`): counting a busy function's day of
runs for every page view was what held the function page at 40 requests/s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from html import escape

from sqlalchemy.orm import Session, sessionmaker

from publisher.catalogue.queries import Bucket, activity

WIDTH, HEIGHT = 640, 160
LEFT, BOTTOM, TOP = 36, 22, 8
HOURS = 24
# Distinct (function, minute) charts kept; a page view of an older minute recomputes.
CACHED_CHARTS = 1024


@dataclass(frozen=True)
class Chart:
    """The rendered chart of one function and its totals over the last :data:`HOURS`."""

    svg: str
    total: int
    failed: int
    hours: int = HOURS


ChartOf = Callable[[str, str, datetime], Chart]


def chart_cache(sessions: sessionmaker[Session], size: int = CACHED_CHARTS) -> ChartOf:
    """``chart(namespace, function, minute)``: the chart up to the end of ``minute``, cached.

    A chart is at most one minute behind the activations table; each service process keeps its own
    cache, so no process ever has to tell another that a function ran.
    """

    @lru_cache(maxsize=size)
    def chart(namespace: str, function: str, minute: datetime) -> Chart:
        with sessions() as session:
            buckets = activity(session, namespace, function, now=minute + timedelta(minutes=1), hours=HOURS)
        return Chart(
            activity_svg(buckets, HOURS), sum(b.total for b in buckets), sum(b.failed for b in buckets)
        )

    return chart


def activity_svg(buckets: Sequence[Bucket], hours: int) -> str:
    """Stacked bars (successes over failures) for ``buckets``, oldest on the left."""
    total = sum(b.total for b in buckets)
    failed = sum(b.failed for b in buckets)
    peak = max((b.total for b in buckets), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(buckets), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">Activations over the last {hours} hours</title>',
        f'<desc id="chart-desc">{total} activations, {failed} failed.</desc>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, bucket in enumerate(buckets):
        x = LEFT + i * slot + slot * 0.1
        w = slot * 0.8
        ok_h = plot_h * (bucket.total - bucket.failed) / peak
        fail_h = plot_h * bucket.failed / peak
        label = escape(f"{bucket.start:%Y-%m-%d %H:%M} UTC: {bucket.total} runs, {bucket.failed} failed")
        parts.append(f"<g><title>{label}</title>")
        if fail_h:
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{TOP + plot_h - fail_h:.1f}" '
                f'width="{w:.1f}" height="{fail_h:.1f}"/>'
            )
        if ok_h:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{TOP + plot_h - fail_h - ok_h:.1f}" '
                f'width="{w:.1f}" height="{ok_h:.1f}"/>'
            )
        parts.append("</g>")
        if i % max(len(buckets) // 6, 1) == 0:
            parts.append(
                f'<text class="tick" x="{x + w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{bucket.start:%H:%M}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
