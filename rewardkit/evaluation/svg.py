"""Small inline SVG charts for the HTML report: no script, no CDN, no font files, so the page opens offline and
its bytes depend only on the numbers (coordinates rounded to 0.1 px)."""
from __future__ import annotations

from html import escape

W, H, PAD = 520, 260, 44
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1")


def _axes(x_label: str, y_label: str) -> list[str]:
    return [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#444"/>',
            f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>',
            f'<text x="{(W + PAD) / 2:.1f}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text x="12" y="{(H - PAD) / 2:.1f}" text-anchor="middle" transform="rotate(-90 12 '
            f'{(H - PAD) / 2:.1f})">{escape(y_label)}</text>']


def _legend(names: list[str], y: float = 20) -> list[str]:
    return [f'<text x="{W - 12}" y="{y + 14 * k}" text-anchor="end" fill="{COLOURS[k % len(COLOURS)]}">'
            f'{escape(name)}</text>' for k, name in enumerate(names)]


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str) -> str:
    """One polyline (with dots) per series over shared linear axes, the ranges labelled at the ends."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    sx = (W - 10 - PAD) / ((x1 - x0) or 1)
    sy = (H - PAD - 10) / ((y1 - y0) or 1)
    out = _axes(x_label, y_label)
    for k, values in enumerate(series.values()):
        xy = [(PAD + (x - x0) * sx, H - PAD - (y - y0) * sy) for x, y in values]
        colour = COLOURS[k % len(COLOURS)]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in xy]
    out += [f'<text x="{PAD}" y="{H - PAD + 14}" text-anchor="middle">{x0:.3g}</text>',
            f'<text x="{W - 10}" y="{H - PAD + 14}" text-anchor="end">{x1:.3g}</text>',
            f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end">{y0:.3g}</text>',
            f'<text x="{PAD - 4}" y="16" text-anchor="end">{y1:.3g}</text>', *_legend(list(series))]
    return _figure(title, out, H)


def bar_chart(labels: list[str], series: dict[str, list[float]], title: str, x_max: float = 1.0) -> str:
    """Horizontal bars, one group of bars a label (one bar per series), values on [0, x_max]."""
    if not labels:
        return ""
    per, left = 12 * len(series) + 6, 190
    legend = 14 * len(series) if len(series) > 1 else 0
    height = 20 + per * len(labels) + 10 + legend
    out = []
    for i, label in enumerate(labels):
        y = 10 + i * per
        out.append(f'<text x="{left - 6}" y="{y + 10}" text-anchor="end">{escape(label[:34])}</text>')
        for k, values in enumerate(series.values()):
            width = max(0.0, values[i]) / x_max * (W - left - 50)
            # a bar of 0 still shows its value, just right of the axis
            out.append(f'<rect x="{left}" y="{y + 12 * k}" width="{width:.1f}" height="10" '
                       f'fill="{COLOURS[k % len(COLOURS)]}"/><text x="{left + width + 4:.1f}" y="{y + 12 * k + 9}">'
                       f'{values[i]:.3f}</text>')
    out += _legend(list(series), 20 + per * len(labels)) if legend else []  # below the bars
    return _figure(title, out, height)


def _figure(title: str, body: list[str], height: int) -> str:
    return (f'<figure><figcaption>{escape(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" font-size="11" font-family="sans-serif">'
            + "".join(body) + "</svg></figure>")
