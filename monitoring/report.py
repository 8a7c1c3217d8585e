"""The drift report: one self-contained HTML page (no script, no external URL) that works offline.

It shows the decision, one baseline-vs-current plot per drifted feature and for the prediction (inline SVG,
drawn here from the buckets the checks used), the per-feature table and the schema anomalies; TFDV's
statistics are linked as the downloadable ``input_stats_<date>.json``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from monitoring.drift import Decision, Distribution, FeatureDrift

BASELINE_COLOUR = "#9e9e9e"
CURRENT_COLOUR = "#d95f02"


class AnomalyLike(Protocol):
    """What the report shows of an anomaly (``monitoring.drift_check.Anomaly``, a frozen dataclass)."""

    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def column(self) -> str: ...
    @property
    def detail(self) -> str: ...


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}"


def _nice_top(value: float) -> float:
    """The smallest round number (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8 × 10^k) at or above ``value``: the y axis' top,
    cut in four at round numbers too."""
    if not value > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.2, 1.6, 2.0, 2.4, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def distribution_svg(dist: Distribution, width: int = 760, height: int = 300) -> str:
    """A grouped bar chart of the share of rows per bucket, baseline (grey) beside current (orange).

    Args:
        dist: The feature's buckets.
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        An inline ``<svg>`` element; each bar has a tooltip with both shares.
    """
    n_b, n_c = sum(dist.baseline), sum(dist.current)
    base = [v / n_b if n_b else 0.0 for v in dist.baseline]
    cur = [v / n_c if n_c else 0.0 for v in dist.current]
    left, right, top, bottom = 52, 12, 26, 78
    plot_w, plot_h = width - left - right, height - top - bottom
    y_top = _nice_top(max([*base, *cur, 0.0]))
    n = max(1, len(dist.labels))
    group = plot_w / n
    bar = group * 0.4
    label_every = max(1, math.ceil(n / 30))
    esc = html.escape
    parts = [(f'<svg class="distribution" role="img" width="{width}" height="{height}" font-family="sans-serif" '
              f'viewBox="0 0 {width} {height}" aria-label="{esc(dist.feature)}: share of rows per bucket, baseline '
              f'and current">'),
             f'<title>{esc(dist.feature)}: share of rows per bucket, baseline (grey) and current (orange)</title>']
    for i in range(5):  # horizontal grid lines and y labels: 0, 25, 50, 75, 100% of the axis
        share = y_top * i / 4
        y = top + plot_h * (1 - i / 4)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e0e0e0"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                     f'{100 * share:.3g}%</text>')
    for i, label in enumerate(dist.labels):
        x = left + i * group + group * 0.1
        tip = (f"{esc(label)}: baseline {100 * base[i]:.2f}% ({dist.baseline[i]:.0f} rows), "
               f"current {100 * cur[i]:.2f}% ({dist.current[i]:.0f} rows)")
        for offset, share, colour in ((0.0, base[i], BASELINE_COLOUR), (bar, cur[i], CURRENT_COLOUR)):
            h = plot_h * min(share / y_top, 1.0)
            parts.append(f'<rect x="{x + offset:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{tip}</title></rect>')
        if i % label_every == 0:
            lx, ly = left + (i + 0.5) * group, top + plot_h + 12
            parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="end" '
                         f'transform="rotate(-40 {lx:.1f} {ly:.1f})">{esc(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>')
    legend = [(f"baseline, {n_b:,.0f} rows", BASELINE_COLOUR), (f"current, {n_c:,.0f} rows", CURRENT_COLOUR)]
    lx = left + plot_w - sum(30 + 6.5 * len(text) for text, _ in legend)  # ~6.5 px a character at 11 px
    for text, colour in legend:
        parts.append(f'<rect x="{lx:.0f}" y="6" width="11" height="11" fill="{colour}"/>'
                     f'<text x="{lx + 15:.0f}" y="16" font-size="11">{text}</text>')
        lx += 30 + 6.5 * len(text)
    parts.append(f'<text x="{left}" y="16" font-size="11">share of rows</text></svg>')
    return "".join(parts)


def _plot_caption(row: FeatureDrift) -> str:
    verdict = "drifted" if row.drifted else "no drift"
    check = f"{row.metric} {_number(row.value)} (threshold {_number(row.threshold)})"
    checks = (("psi", "PSI", row.psi), ("mean_shift", "mean shift (SD)", row.mean_shift),
              ("rank_shift", "rank shift", row.rank_shift), ("zero_share", "zero share", row.zero_share))
    details = [f"{label} {_number(value)}" for metric, label, value in checks
               if not math.isnan(value) and metric != row.metric]
    return f"{verdict}: {check}" + (f"; {', '.join(details)}" if row.kind != "categorical" and details else "")


def render_html(date: str, decision: Decision, rows: Sequence[FeatureDrift], anomalies: Sequence[AnomalyLike],
                distributions: Mapping[str, Distribution], baseline_uri: str, current_uri: str,
                stats_file: str | None = None) -> str:
    """The drift report page.

    Args:
        date: The run's date.
        decision: The run's decision.
        rows: Per-feature results.
        anomalies: Schema anomalies.
        distributions: Buckets per feature to plot (the drifted features and the prediction), in plot order.
        baseline_uri: Where the baseline came from.
        current_uri: Where the current data came from.
        stats_file: Name of the TFDV statistics file beside the report, linked for download.

    Returns:
        The HTML text; every plot is inline SVG and the page loads nothing.
    """
    esc = html.escape
    by_name = {r.feature: r for r in rows}
    body = []
    for r in rows:
        style = ' class="drifted"' if r.drifted else ""
        body.append(f"<tr{style}><td>{esc(r.feature)}</td><td>{r.kind}</td><td>{r.metric}</td>"
                    f"<td>{_number(r.value)}</td><td>{_number(r.threshold)}</td><td>{'yes' if r.drifted else ''}</td>"
                    f"<td>{_number(r.psi)}</td><td>{_number(r.rank_shift)}</td><td>{_number(r.zero_share)}</td>"
                    f"<td>{_number(r.mean_shift)}</td><td>{_number(r.js)}</td><td>{esc(r.note)}</td></tr>")
    items = "".join(f"<li><b>{esc(a.severity)}</b> {esc(a.kind)} <code>{esc(a.column)}</code>: "
                    f"{esc(a.detail)}</li>" for a in anomalies) or "<li>none</li>"
    figures = []
    for name, dist in distributions.items():
        row = by_name.get(name)
        caption = _plot_caption(row) if row is not None else ""
        kind = "the prediction" if row is not None and row.kind == "prediction" else "feature"
        figures.append(f'<figure class="plot" data-feature="{esc(name)}"><figcaption><b>{esc(name)}</b> ({kind}) '
                       f'— {esc(caption)}</figcaption>{distribution_svg(dist)}</figure>')
    plots = "".join(figures) or "<p>No feature drifted and no prediction was compared: nothing to plot.</p>"
    if stats_file:
        stats = (f'<p><a href="{esc(stats_file)}" download>{esc(stats_file)}</a>: TFDV statistics of the current '
                 f'data, a <code>DatasetFeatureStatisticsList</code> as JSON (<code>json_format.Parse</code> it for '
                 f'<code>tfdv.visualize_statistics</code> in a notebook).</p>')
    else:
        stats = "<p>No TFDV statistics this run.</p>"
    verdict = "RETRAIN" if decision.retrain else decision.status.replace("_", " ")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report {esc(date)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}} th{{background:#eee}} tr.drifted{{background:#fde2e1}}
figure{{margin:1.5em 0}} figcaption{{font-size:14px;margin-bottom:4px}}</style></head><body>
<h1>Drift report {esc(date)}: {esc(verdict)}</h1>
<p>{esc(decision.reason)}</p>
<p>baseline <code>{esc(baseline_uri)}</code> · current <code>{esc(current_uri)}</code></p>
<h2>Baseline vs current</h2>
<p>Share of rows per bucket: grey the baseline, orange the current data. Numeric buckets are cut at the
baseline's quantiles (the PSI's buckets), so the grey bars are about even and the orange ones show where
the data moved; categorical features show one bar pair per category. Hover a bar for its numbers.</p>
{plots}
<h2>Features</h2>
<table><tr><th>feature</th><th>kind</th><th>metric</th><th>value</th><th>threshold</th><th>drifted</th>
<th>PSI</th><th>rank shift</th><th>zero share</th><th>mean shift (SD)</th><th>JS</th>
<th>note</th></tr>
{''.join(body)}</table>
<h2>Schema anomalies</h2><ul>{items}</ul>
<h2>TFDV statistics</h2>
{stats}
</body></html>
"""
