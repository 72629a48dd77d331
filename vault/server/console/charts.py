"""Charts drawn as SVG on the server (no script, no inline style: shapes carry classes that the
console's stylesheet colours, so the light and dark themes both apply). Every chart has a
``<title>`` and an ``aria-label`` and is followed on its page by the same numbers as a table."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from markupsafe import Markup, escape

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_SERIES = 6


def _day(at: str) -> str:
    return at[:10]


def _days(first: str, last: str) -> list[str]:
    start = datetime.fromisoformat(first)
    end = datetime.fromisoformat(last)
    out: list[str] = []
    while start <= end and len(out) < 400:
        out.append(start.date().isoformat())
        start += timedelta(days=1)
    return out


def _frame(width: int, height: int, label: str, parts: list[str]) -> Markup:
    text = escape(label)
    # S704: the parts are numbers, fixed markup and escape()d text, built in this module only
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart" '
        f'role="img" aria-label="{text}"><title>{text}</title>{"".join(parts)}</svg>'
    )


def _bars(days: list[str], series: dict[str, Counter], label: str) -> Markup:
    width, height, left, bottom, top = 720, 240, 40, 30, 10
    if not days:
        return _frame(width, 60, f"{label}: no events", ['<text x="10" y="35" class="axis">no events</text>'])
    totals = [sum(s[d] for s in series.values()) for d in days]
    peak = max(totals) or 1
    slot = (width - left - 10) / len(days)
    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" '
        'class="axis-line"/>',
        f'<text x="{left - 4}" y="{top + 10}" class="axis" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" class="axis" text-anchor="end">0</text>',
    ]
    for i, d in enumerate(days):
        y = float(height - bottom)
        for n, (_, counts) in enumerate(series.items()):
            value = counts[d]
            if not value:
                continue
            h = (height - bottom - top) * value / peak
            y -= h
            parts.append(
                f'<rect x="{left + i * slot + 1:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" '
                f'height="{h:.1f}" class="s{n % MAX_SERIES}"><title>{escape(d)}: {value}</title></rect>'
            )
        if len(days) <= 14 or i % max(1, len(days) // 7) == 0:
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - 10}" class="axis" '
                f'text-anchor="middle">{escape(d[5:])}</text>'
            )
    return _frame(width, height, label, parts)


def reads_per_day(events: list[dict]) -> dict:
    """Secret reads per day per client (the busiest clients, the rest as "other")."""
    by_client = Counter(e.get("client") or "-" for e in events)
    top = [c for c, _ in by_client.most_common(MAX_SERIES - 1)]
    series: dict[str, Counter] = defaultdict(Counter)
    for e in events:
        name = e.get("client") or "-"
        series[name if name in top else "other"][_day(e["at"])] += 1
    days = _days(min(_day(e["at"]) for e in events), max(_day(e["at"]) for e in events)) if events else []
    ordered = {k: series[k] for k in [*top, "other"] if k in series}
    svg = _bars(days, ordered, "Secret reads per day per client")
    rows = [(d, [ordered[k][d] for k in ordered]) for d in days if any(ordered[k][d] for k in ordered)]
    return {"svg": svg, "legend": list(ordered), "rows": rows}


def per_day(events: list[dict], what: str) -> dict:
    counts = Counter(_day(e["at"]) for e in events)
    days = _days(min(counts), max(counts)) if counts else []
    svg = _bars(days, {what: counts}, f"{what.capitalize()} per day")
    return {"svg": svg, "legend": [what], "rows": [(d, [counts[d]]) for d in days if counts[d]]}


def heat_map(events: list[dict]) -> dict:
    """Reads by weekday and hour (UTC): off-hours access stands out."""
    grid: Counter = Counter()
    for e in events:
        at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        grid[(at.weekday(), at.hour)] += 1
    peak = max(grid.values(), default=0)
    cell, left, top = 26, 40, 20
    parts = [
        f'<text x="{left + h * cell + cell / 2}" y="14" class="axis" text-anchor="middle">{h:02d}</text>'
        for h in range(0, 24, 3)
    ]
    for d in range(7):
        parts.append(
            f'<text x="{left - 6}" y="{top + d * cell + 17}" class="axis" text-anchor="end">{DAYS[d]}</text>'
        )
        for h in range(24):
            value = grid[(d, h)]
            level = 0 if not value else 1 + min(4, int(4 * value / peak))
            parts.append(
                f'<rect x="{left + h * cell}" y="{top + d * cell}" width="{cell - 2}" height="{cell - 2}" '
                f'class="h{level}"><title>{DAYS[d]} {h:02d}:00 UTC: {value}</title></rect>'
            )
    label = "Secret reads by weekday and hour (UTC)"
    svg = _frame(left + 24 * cell + 4, top + 7 * cell + 4, label, parts)
    busiest = sorted(((v, d, h) for (d, h), v in grid.items()), reverse=True)[:10]
    return {"svg": svg, "rows": [(f"{DAYS[d]} {h:02d}:00", v) for v, d, h in busiest]}


def qr_svg(uri: str) -> Markup:
    """The enrollment QR code (segno's SVG: paths with attributes, no style)."""
    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", xmldecl=False, svgns=True, scale=5, dark="#000", light="#fff"
    )
    svg = out.getvalue().decode()  # segno's own output: paths of the URI's modules, no text
    labelled = svg.replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1)
    return Markup(labelled)  # noqa: S704 - segno's SVG, no input text in it
